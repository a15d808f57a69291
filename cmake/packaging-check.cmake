# Run by CPack (CPACK_PRE_BUILD_SCRIPTS) once the files are staged, before any
# .deb is written: packages are built only from a tree configured with
# -DCMAKE_INSTALL_PREFIX=/usr, since their maintainer scripts, unit and
# default config name /usr, /etc and /var (docs/install.md).
if(NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "The Debian packages need a build configured with "
          "-DCMAKE_INSTALL_PREFIX=/usr (this one installs into "
          "${CPACK_PACKAGING_INSTALL_PREFIX}); see docs/install.md")
endif()
