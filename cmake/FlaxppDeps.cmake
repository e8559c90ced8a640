# Finds flaxpp's dependencies (all Debian packages). A missing one stops configure and names
# the package to install. Shared by the build and by the installed flaxppConfig.cmake.
macro(flaxpp_require_package pkg apt)
  find_package(${pkg} ${ARGN} QUIET)
  if(NOT ${pkg}_FOUND)
    message(FATAL_ERROR "flaxpp needs ${pkg}: install it with `apt-get install ${apt}` "
                        "(or run scripts/test, which installs every dependency).")
  endif()
endmacro()

find_package(Threads REQUIRED)
flaxpp_require_package(xtl xtl-dev)
flaxpp_require_package(xsimd libxsimd-dev)
flaxpp_require_package(xtensor xtensor-dev)  # flaxpp::xtensor (core/xtensor.hpp) only
flaxpp_require_package(nlohmann_json nlohmann-json3-dev)
flaxpp_require_package(OpenBLAS libopenblas-dev)
if(NOT TARGET flaxpp_openblas)
  add_library(flaxpp_openblas INTERFACE IMPORTED)
  set_target_properties(flaxpp_openblas PROPERTIES
    INTERFACE_LINK_LIBRARIES "${OpenBLAS_LIBRARIES}"
    INTERFACE_INCLUDE_DIRECTORIES "${OpenBLAS_INCLUDE_DIRS}")
endif()
