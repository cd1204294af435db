# Crash safety (issue 7 item 6): SIGKILL a process saving a model, many times; the file is always
# intact. Smoke run (200 kills) in the default suite; the opt-in long run (3000 kills) is
#     cmake --build BUILD --target kill_save_long        (or AG_KILLS=N ctest -R kill_save)
add_executable(crash_saver ${CMAKE_CURRENT_SOURCE_DIR}/main_job/crash_saver.c)
target_link_libraries(crash_saver PRIVATE tapegrad)
ag_test_program(crash_saver_run crash_saver)
add_test(NAME kill_save COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/main_job/kill_save.sh ${crash_saver_run} 200)
set_tests_properties(kill_save PROPERTIES TIMEOUT 600 LABELS "crash")
add_custom_target(kill_save_long
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/main_job/kill_save.sh $<TARGET_FILE:crash_saver> 3000
  DEPENDS crash_saver USES_TERMINAL)

# Resume after SIGKILL == uninterrupted training (examples/fashion_mnist, the main job's synthetic
# data helper from tests/fashion_mnist.cmake). Opt-in longer run: AG_RESUME_KILLS=N ctest -R kill_resume.
if(AG_BUILD_EXAMPLES AND EXISTS ${PROJECT_SOURCE_DIR}/examples/fashion_mnist/CMakeLists.txt
   AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/main_job/fashion_mnist_synth.c)
  ag_test_program(fashion_mnist_run fashion_mnist)
  ag_test_program(fashion_mnist_synth_run fashion_mnist_synth)
  add_test(NAME kill_resume
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/main_job/kill_resume.sh ${fashion_mnist_run}
            ${fashion_mnist_synth_run} ${CMAKE_CURRENT_BINARY_DIR}/kill_resume 20)
  set_tests_properties(kill_resume PROPERTIES TIMEOUT 600 LABELS "crash")
endif()
