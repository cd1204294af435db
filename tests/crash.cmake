# Crash safety (issue 7 item 6): SIGKILL a process saving a model, many times; the file is always
# intact. Smoke run (200 kills) in the default suite; the opt-in long run (3000 kills) is
#     cmake --build BUILD --target kill_save_long        (or AG_KILLS=N ctest -R kill_save)
add_executable(crash_saver ${CMAKE_CURRENT_SOURCE_DIR}/crash_saver.c)
target_link_libraries(crash_saver PRIVATE tapegrad)
add_test(NAME kill_save COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/kill_save.sh $<TARGET_FILE:crash_saver> 200)
set_tests_properties(kill_save PROPERTIES TIMEOUT 600 LABELS "crash")
add_custom_target(kill_save_long
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/kill_save.sh $<TARGET_FILE:crash_saver> 3000
  DEPENDS crash_saver USES_TERMINAL)
