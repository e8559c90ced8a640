# Cross build for 64-bit ARM with Debian's cross toolchain and multiarch libraries
# (scripts/check cross installs g++-aarch64-linux-gnu, qemu-user and the :arm64 packages).
# Header-only dependencies (xtensor, xsimd, nlohmann_json, doctest) are architecture-independent
# and found where the host has them; libraries come from /usr/lib/aarch64-linux-gnu. Tests run
# through qemu-user (ctest uses CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# `-L /`: the arm64 multiarch loader and libc (libc6:arm64, which libopenblas-dev:arm64 brings),
# not the cross toolchain's older copies in /usr/aarch64-linux-gnu; mixing that loader with the
# newer libc hangs every pthread_create under qemu.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /)

# Debian puts the CMake packages of xsimd and xtensor in the host's per-architecture
# libdir although they hold only headers, and their :arm64 copies cannot be installed (they need
# xtl-dev:arm64, which Debian does not build: xtl-dev is Architecture: all, not Multi-Arch): use
# the host's copies.
foreach(pkg xsimd xtensor)
  if(EXISTS /usr/lib/x86_64-linux-gnu/cmake/${pkg})
    set(${pkg}_DIR /usr/lib/x86_64-linux-gnu/cmake/${pkg} CACHE PATH "header-only: the host copy" FORCE)
  endif()
endforeach()
