# API reference (issue 8 item 5): every public header opens with an OVERVIEW and an EXAMPLE, and
# every public function has a comment (tests/check_api_docs.cmake says exactly what counts). A CMake
# script: runs wherever ctest does. By hand:  cmake -P tests/check_api_docs.cmake
# AG_PUBLIC_HEADERS is the installed set (top-level CMakeLists.txt); '|' keeps it one argument.
string(REPLACE ";" "|" AG_API_DOCS_HEADERS "${AG_PUBLIC_HEADERS}")
add_test(NAME api_docs
  COMMAND ${CMAKE_COMMAND} "-DHEADERS=${AG_API_DOCS_HEADERS}" -P ${CMAKE_CURRENT_LIST_DIR}/check_api_docs.cmake)
set_tests_properties(api_docs PROPERTIES TIMEOUT 120 LABELS "docs")
