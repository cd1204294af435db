# The distributed module under mpirun (-DAG_MPI=ON only; CI: .ci/run.d/mpi.sh). Label "mpi".
#   dist_unit:   tapegrad_dist's calls at np 1-4 (tests/dist/dist_unit.c): shard cuts, exact fixed-point
#                sums whatever the ranks, range and NaN counted, mismatch refused, broadcasts
#   dist_bits:   fashion_mnist --dist at np 1-4 writes the one-process reference's model byte for byte;
#                stopped at np 2, resumed at np 3 / np 4 / one process: the same model
#   dist_faults: mismatched ranks refused; a killed rank ends the job within 30 s, its checkpoint resumes;
#                a stopped rank makes the others give up after --dist-timeout; SIGTERM to mpirun stops
#                every rank after the same step and the checkpoint resumes
if(AG_MPI)
  find_package(MPI REQUIRED COMPONENTS C)
  set(AG_MPIRUN ${MPIEXEC_EXECUTABLE})
  add_executable(dist_unit ${CMAKE_CURRENT_LIST_DIR}/dist/dist_unit.c)
  target_link_libraries(dist_unit PRIVATE tapegrad_dist)
  add_test(NAME dist_unit COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/dist/dist_unit.sh ${AG_MPIRUN} $<TARGET_FILE:dist_unit>)
  set_tests_properties(dist_unit PROPERTIES TIMEOUT 300 LABELS mpi)
  # dist.h documents every call, as the core headers must (tests/api_docs.cmake)
  add_test(NAME dist_api_docs COMMAND ${CMAKE_COMMAND} -DHEADERS=${PROJECT_SOURCE_DIR}/dist/include/tapegrad/dist.h
           -P ${CMAKE_CURRENT_LIST_DIR}/check_api_docs.cmake)
  set_tests_properties(dist_api_docs PROPERTIES TIMEOUT 60 LABELS "mpi;docs")
  # fashion_mnist_synth comes from fashion_mnist.cmake (included after this file): the same condition
  if(AG_BUILD_EXAMPLES AND EXISTS ${PROJECT_SOURCE_DIR}/examples/fashion_mnist/CMakeLists.txt)
    foreach(mode bits faults)
      add_test(NAME dist_${mode}
        COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/dist/dist_test.sh ${mode} ${AG_MPIRUN} $<TARGET_FILE:fashion_mnist>
                $<TARGET_FILE:fashion_mnist_synth> ${CMAKE_CURRENT_BINARY_DIR}/dist_${mode})
      set_tests_properties(dist_${mode} PROPERTIES TIMEOUT 400 LABELS mpi)
    endforeach()
    # the fault test kills and stops processes: never next to the other multi-process runs
    set_tests_properties(dist_faults PROPERTIES RUN_SERIAL TRUE)
  endif()
endif()
