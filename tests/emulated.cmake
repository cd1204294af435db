# ag_test_program(<var> <target>): the path by which a test script runs <target>. Normally the program
# itself; when cross-compiling with an emulator (CMAKE_CROSSCOMPILING_EMULATOR, e.g. qemu-aarch64 in
# .ci/aarch64-linux-gnu.cmake) a generated wrapper that execs the program in the emulator, so the shell
# tests run unchanged on a foreign target. exec keeps the process id, so the scripts' kill -TERM / -KILL
# reach the emulator, which passes TERM on to the program and dies with it on KILL.
function(ag_test_program var target)
  if(CMAKE_CROSSCOMPILING AND CMAKE_CROSSCOMPILING_EMULATOR)
    list(JOIN CMAKE_CROSSCOMPILING_EMULATOR " " emu)
    set(wrapper ${PROJECT_BINARY_DIR}/emulated/${target})
    get_property(done GLOBAL PROPERTY AG_EMULATED_${target})
    if(NOT done)   # one wrapper per program, whichever test file asks first
      file(GENERATE OUTPUT ${wrapper}
           CONTENT "#!/bin/sh\nexec ${emu} \"$<TARGET_FILE:${target}>\" \"$@\"\n"
           FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
      set_property(GLOBAL PROPERTY AG_EMULATED_${target} 1)
    endif()
    set(${var} ${wrapper} PARENT_SCOPE)
  else()
    set(${var} $<TARGET_FILE:${target}> PARENT_SCOPE)
  endif()
endfunction()
