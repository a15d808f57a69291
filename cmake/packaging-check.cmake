# Run by CPack (CPACK_PRE_BUILD_SCRIPTS) once the files are staged, before any
# .deb is written: packages are built only from a tree configured with
# -DCMAKE_INSTALL_PREFIX=/usr, since the multiarch libdir, the maintainer
# scripts, the unit and the default config are decided at configure time
# from the prefix (docs/install.md). CPack would otherwise move a /usr/local
# tree's files under /usr and ship a unit naming /usr/local.
if(NOT CPACK_MAB_CONFIGURED_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "The Debian packages need a build configured with "
          "-DCMAKE_INSTALL_PREFIX=/usr; this one was configured with "
          "CMAKE_INSTALL_PREFIX=${CPACK_MAB_CONFIGURED_PREFIX} (docs/install.md)")
endif()
