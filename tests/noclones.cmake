# Clones vs baseline (issue 4 item 3): the AG__CLONES op bodies (AVX-512 / AVX2 / SSE2, picked at
# load time) must give the bits of the baseline build. A clone cannot be forced in-process, so the
# library is built a second time with -DAG_NO_CLONES (the SSE2 baseline everywhere, ag__sigmoid_array
# on its SSE2 variant too) and test_eltwise_simd --hash, which prints a hash of every op's forward
# value and gradients on fixed random inputs, runs against both; the outputs must be equal byte for
# byte. Only where the main build has clones: x86, no sanitizers, no AG_NO_CLONES already.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|i.86)$" AND NOT AG_SANITIZE
   AND NOT CMAKE_C_FLAGS MATCHES "AG_NO_CLONES" AND CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  add_library(tapegrad_noclones STATIC ${AG_SOURCES})
  target_include_directories(tapegrad_noclones PUBLIC ${AG_INCLUDE_DIRS} ${PROJECT_SOURCE_DIR}/autograd)
  target_compile_definitions(tapegrad_noclones PRIVATE _POSIX_C_SOURCE=200809L PUBLIC AG_NO_CLONES)
  if(AG_DOUBLE)
    target_compile_definitions(tapegrad_noclones PUBLIC AG_DOUBLE)
  endif()
  target_link_libraries(tapegrad_noclones PUBLIC m Threads::Threads)

  add_executable(test_eltwise_simd_nc ${CMAKE_CURRENT_SOURCE_DIR}/ops/test_eltwise_simd.c
                                      ${CMAKE_CURRENT_SOURCE_DIR}/testutil.c
                                      ${AG_OP_RECORD_SOURCES})
  target_link_libraries(test_eltwise_simd_nc PRIVATE tapegrad_noclones PkgConfig::CHECK)
  target_compile_definitions(test_eltwise_simd_nc PRIVATE _POSIX_C_SOURCE=200809L)
  target_include_directories(test_eltwise_simd_nc PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  add_test(NAME test_eltwise_simd_nc COMMAND test_eltwise_simd_nc)

  add_test(NAME eltwise_clones_vs_baseline COMMAND sh -c [=[
a=$("$0" --hash) || exit 1
b=$("$1" --hash) || exit 1
printf '%s\n' "$a" > "$2/hash_clones.txt"
printf '%s\n' "$b" > "$2/hash_noclones.txt"
if [ -z "$a" ] || ! cmp -s "$2/hash_clones.txt" "$2/hash_noclones.txt"; then
  diff "$2/hash_clones.txt" "$2/hash_noclones.txt"; exit 1
fi
echo "$(printf '%s\n' "$a" | wc -l) ops: clones and baseline bit-identical"
]=] $<TARGET_FILE:test_eltwise_simd> $<TARGET_FILE:test_eltwise_simd_nc> ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(eltwise_clones_vs_baseline PROPERTIES TIMEOUT 120)
endif()
