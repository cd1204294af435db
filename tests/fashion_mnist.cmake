# Integration tests of examples/fashion_mnist (included by tests/CMakeLists.txt).
#   fashion_mnist_resume: tiny synthetic IDX set; same seed -> same model bytes (1 vs 2 threads),
#                         resume == uninterrupted (momentum and Adam), --eval, NaN blow-up handling,
#                         refused outputs (colliding paths, FIFO, directory), damaged model/checkpoint
#                         metadata (files edited by fashion_mnist_synth --set-meta), SIGTERM mid-run,
#                         a 760-epoch run whose history outgrows one metadata value, resumed
#   fashion_mnist_old_checkpoint: files written at f799a42 resume (to the old run's model) and evaluate
#   fm_svg_test:          the SVG curve writer's axis ticks (tests/main_job/fm_svg_test.c)
#   fashion_mnist_real:   1 epoch on 20000 real images when dataset-fashion-mnist is installed
#                         (skipped with status 77 otherwise), accuracy > 70%
if(AG_BUILD_EXAMPLES AND EXISTS ${PROJECT_SOURCE_DIR}/examples/fashion_mnist/CMakeLists.txt)
  add_executable(fashion_mnist_synth ${CMAKE_CURRENT_LIST_DIR}/main_job/fashion_mnist_synth.c)
  ag_test_program(fashion_mnist_run fashion_mnist)
  ag_test_program(fashion_mnist_synth_run fashion_mnist_synth)
  add_test(NAME fashion_mnist_resume
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/main_job/fashion_mnist_test.sh resume ${fashion_mnist_run}
            ${fashion_mnist_synth_run} ${CMAKE_CURRENT_BINARY_DIR}/fashion_mnist_resume)
  add_test(NAME fashion_mnist_real
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/main_job/fashion_mnist_test.sh real ${fashion_mnist_run}
            ${CMAKE_CURRENT_BINARY_DIR}/fashion_mnist_real)
  set_tests_properties(fashion_mnist_resume fashion_mnist_real PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
  # checkpoint and model files of the program at f799a42 (tests/main_job/fixtures) still resume and evaluate
  add_test(NAME fashion_mnist_old_checkpoint
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/main_job/fm_old_checkpoint.sh ${fashion_mnist_run} ${fashion_mnist_synth_run}
            ${CMAKE_CURRENT_LIST_DIR}/main_job/fixtures ${CMAKE_CURRENT_BINARY_DIR}/fm_old_checkpoint ${AG_DOUBLE})
  set_tests_properties(fashion_mnist_old_checkpoint PROPERTIES TIMEOUT 120)
  # the program's SVG curve writer on its own (axis ticks for flat, huge and nearly-equal values)
  add_executable(fm_svg_test ${CMAKE_CURRENT_LIST_DIR}/main_job/fm_svg_test.c ${PROJECT_SOURCE_DIR}/examples/fashion_mnist/svg.c)
  target_link_libraries(fm_svg_test PRIVATE ag_testutil m)
  target_include_directories(fm_svg_test PRIVATE ${PROJECT_SOURCE_DIR}/examples/fashion_mnist)
  add_test(NAME fm_svg_test COMMAND fm_svg_test)
  set_tests_properties(fm_svg_test PROPERTIES TIMEOUT 60)
endif()
