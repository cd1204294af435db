# Integration tests of examples/fashion_mnist (included by tests/CMakeLists.txt).
#   fashion_mnist_resume: tiny synthetic IDX set; same seed -> same model bytes (1 vs 2 threads),
#                         resume == uninterrupted (momentum and Adam), --eval, NaN blow-up handling,
#                         refused outputs (colliding paths, FIFO, directory), damaged model/checkpoint
#                         metadata (files edited by fashion_mnist_synth --set-meta), SIGTERM mid-run,
#                         a 760-epoch run whose history outgrows one metadata value, resumed
#   fashion_mnist_real:   1 epoch on 20000 real images when dataset-fashion-mnist is installed
#                         (skipped with status 77 otherwise), accuracy > 70%
if(AG_BUILD_EXAMPLES AND EXISTS ${PROJECT_SOURCE_DIR}/examples/fashion_mnist/CMakeLists.txt)
  add_executable(fashion_mnist_synth ${CMAKE_CURRENT_LIST_DIR}/fashion_mnist_synth.c)
  add_test(NAME fashion_mnist_resume
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/fashion_mnist_test.sh resume $<TARGET_FILE:fashion_mnist>
            $<TARGET_FILE:fashion_mnist_synth> ${CMAKE_CURRENT_BINARY_DIR}/fashion_mnist_resume)
  add_test(NAME fashion_mnist_real
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/fashion_mnist_test.sh real $<TARGET_FILE:fashion_mnist>
            ${CMAKE_CURRENT_BINARY_DIR}/fashion_mnist_real)
  set_tests_properties(fashion_mnist_resume fashion_mnist_real PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()
