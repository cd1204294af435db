# The rooms' include rules and no include cycle (issue 21): tests/rooms.sh on the source tree.
add_test(NAME rooms COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/rooms.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(rooms PROPERTIES TIMEOUT 60 LABELS "docs")
