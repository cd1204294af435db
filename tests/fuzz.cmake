# Fuzzing (issue 7 item 3). Included by tests/CMakeLists.txt.
#  - Always: fuzz_make_corpus, the program that writes the seed corpus (tests/io/fuzz/corpus).
#    The corpus is replayed through both harnesses by test_fuzz_regress (a normal Check suite, so it
#    also runs under ASan and valgrind).
#  - AG_FUZZ=ON (clang only): the libFuzzer harnesses fuzz_idx and fuzz_model (and fuzz_gunzip when
#    zlib is found), with the library
#    instrumented for coverage (-fsanitize=fuzzer-no-link) and ASan + UBSan. Run them with
#    tests/io/fuzz/run.sh [seconds]; CI runs a 60-second smoke run of each (.ci/run.d/fuzz.sh).
add_executable(fuzz_make_corpus ${CMAKE_CURRENT_SOURCE_DIR}/io/fuzz/make_corpus.c)
target_link_libraries(fuzz_make_corpus PRIVATE tapegrad)
target_compile_definitions(fuzz_make_corpus PRIVATE _POSIX_C_SOURCE=200809L)

if(AG_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "AG_FUZZ=ON needs clang with libFuzzer: configure with CC=clang "
      "(Debian: apt-get install clang libclang-rt-14-dev)")
  endif()
  set(AG_FUZZ_SAN address,undefined)
  # UBSan findings stop the run like ASan's (by default they are printed and the run goes on)
  target_compile_options(tapegrad PRIVATE -fsanitize=fuzzer-no-link,${AG_FUZZ_SAN} -fno-sanitize-recover=all
    -fno-omit-frame-pointer -g)
  target_link_options(tapegrad INTERFACE -fsanitize=${AG_FUZZ_SAN})
  # The harnesses drive the loaders, not the GEMM: the AVX-512/AVX2 kernels are built uninstrumented.
  # Instrumented at -O3, clang 14 spent over 25 CPU minutes (3.6 GB) on gemm_x86.c alone; 2 s without.
  set_source_files_properties(${PROJECT_SOURCE_DIR}/autograd/kernels/gemm_x86.c TARGET_DIRECTORY tapegrad
    PROPERTIES COMPILE_OPTIONS -fno-sanitize=all)
  foreach(h fuzz_idx fuzz_model)
    add_executable(${h} ${CMAKE_CURRENT_SOURCE_DIR}/io/fuzz/${h}.c)
    target_link_libraries(${h} PRIVATE tapegrad)
    target_compile_options(${h} PRIVATE -fsanitize=fuzzer,${AG_FUZZ_SAN} -fno-sanitize-recover=all
      -fno-omit-frame-pointer -g)
    target_link_options(${h} PRIVATE -fsanitize=fuzzer,${AG_FUZZ_SAN})
  endforeach()
  # fuzz_gunzip: ag__gunzip against zlib's inflate, byte for byte (zlib is a fuzzing peer only, never
  # linked by the library; Debian: zlib1g-dev)
  find_package(ZLIB)
  if(ZLIB_FOUND)
    add_executable(fuzz_gunzip ${CMAKE_CURRENT_SOURCE_DIR}/io/fuzz/fuzz_gunzip.c)
    target_include_directories(fuzz_gunzip PRIVATE ${PROJECT_SOURCE_DIR}/autograd)
    target_link_libraries(fuzz_gunzip PRIVATE tapegrad ZLIB::ZLIB)
    target_compile_options(fuzz_gunzip PRIVATE -fsanitize=fuzzer,${AG_FUZZ_SAN} -fno-sanitize-recover=all
      -fno-omit-frame-pointer -g)
    target_link_options(fuzz_gunzip PRIVATE -fsanitize=fuzzer,${AG_FUZZ_SAN})
  else()
    message(STATUS "zlib not found (Debian: zlib1g-dev): fuzz_gunzip, the differential gzip fuzzer, is not built")
  endif()
endif()
