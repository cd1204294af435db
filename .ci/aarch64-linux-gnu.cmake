# CMake toolchain for the aarch64 cross build of .ci/run.d/aarch64.sh: Debian's cross gcc
# (gcc-aarch64-linux-gnu), Check from the arm64 architecture (check:arm64), and the tests run
# under qemu-user.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
# -L /: the arm64 C library that check:arm64 brought (libc6:arm64, multiarch). The cross
# toolchain's own copy under /usr/aarch64-linux-gnu is another Debian revision; its loader with
# that libc hung every program that started a second thread.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# pkg-config finds the arm64 check.pc, not the host's
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
