# test_op_records (AG_OP_RECORD_SOURCES: tests/ops/op_records.c and tests/ops/records/*.c): one ctest
# entry per op record, op_records/<name>, running that record's TCase (CK_RUN_CASE): gradcheck,
# bad_input and composed. The names are read from the records' `.name = "..."` fields and their
# BIN/ELT macro calls; the configure step re-runs when a file changes. Included by tests/CMakeLists.txt (which skips the suite's single entry).
set(_rec_lines "")
foreach(_rec_src ${AG_OP_RECORD_SOURCES})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_rec_src})
  file(STRINGS ${_rec_src} _lines REGEX "^    (\\{\\.name = \"|BIN\\(|ELT\\()")
  list(APPEND _rec_lines ${_lines})
endforeach()
set(_rec_names "")
foreach(_line ${_rec_lines})
  if(_line MATCHES "\\.name = \"([a-z0-9_]+)\"")
    list(APPEND _rec_names ${CMAKE_MATCH_1})
  elseif(_line MATCHES "^    (BIN|ELT)\\(([a-z0-9_]+)")
    list(APPEND _rec_names ${CMAKE_MATCH_2})
  endif()
endforeach()
if(NOT _rec_names)
  message(FATAL_ERROR "tests/op_records.cmake: no record names found in ${AG_OP_RECORD_SOURCES}")
endif()
foreach(_rec ${_rec_names})
  if(AG_VALGRIND)
    add_test(NAME op_records/${_rec} COMMAND valgrind --quiet --error-exitcode=99 --leak-check=full
      --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible
      $<TARGET_FILE:test_op_records>)
  else()
    add_test(NAME op_records/${_rec} COMMAND test_op_records)
  endif()
  set_tests_properties(op_records/${_rec} PROPERTIES TIMEOUT 300
    ENVIRONMENT "CK_RUN_CASE=${_rec};AG_SOURCE_DIR=${PROJECT_SOURCE_DIR};$<$<BOOL:${AG_VALGRIND}>:CK_FORK=no;AG_TEST_QUICK=1>")
endforeach()
# the list must be the binary's: a record the regex missed would go unrun
string(REPLACE ";" " " _rec_words "${_rec_names}")
ag_test_program(_rec_run test_op_records) # through the emulator when cross-compiled
add_test(NAME op_records_list COMMAND sh -c [=[
want=$("$0" --list | sort) || exit 1
got=$(printf '%s\n' $1 | sort)
[ "$want" = "$got" ] || { echo "ctest entries: $got"; echo "records: $want"; exit 1; }
echo "$(printf '%s\n' "$want" | wc -l) records, one ctest entry each"
]=] ${_rec_run} "${_rec_words}")
