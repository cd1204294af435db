# tapegrad used from outside its tree (tests/consumer_test.sh): find_package, pkg-config (moved
# install too), add_subdirectory, and a float/double mismatch refused at link time. The consumer is
# compiled with this build's flags, sanitizers and coverage included, so that it links.
set(AG_CONSUMER_FLAGS "${CMAKE_C_FLAGS}")
if(AG_SANITIZE)
  string(APPEND AG_CONSUMER_FLAGS " -fsanitize=address,undefined")
endif()
if(AG_COVERAGE)
  string(APPEND AG_CONSUMER_FLAGS " --coverage")
endif()
add_test(NAME consumer
  COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/consumer_test.sh ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}
          ${CMAKE_C_COMPILER} ${AG_DOUBLE} ${CMAKE_CURRENT_BINARY_DIR}/consumer "${AG_CONSUMER_FLAGS}")
set_tests_properties(consumer PROPERTIES TIMEOUT 300)
