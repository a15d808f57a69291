# packaging.cmake - where things are installed, and the Debian packages
# (docs/install.md). Included twice by the top CMakeLists.txt:
#  - before the subdirectories, it sets the install layout they use;
#  - at the end (MAB_PACKAGING_FINISH set), it installs what belongs to no
#    subdirectory (man pages, mabd's unit and default config) and configures
#    CPack, which must come after every install() rule so that it sees every
#    component.
#
# Layout. With the prefix /usr (a distribution's install, and the package
# build) things go where Debian keeps them: the nginx module beside Debian's
# own (/usr/lib/nginx/modules), the Python package in
# /usr/lib/python3/dist-packages, the config in /etc/mab. With any other
# prefix everything stays under the prefix (<libdir>/mab/nginx,
# <libdir>/mab/python, <prefix>/etc/mab), so `cmake --install --prefix DIR`
# writes nowhere else. Every destination is relative to the prefix but the
# config's, which is /etc/mab when the prefix is /usr (decided at install time).

if(NOT MAB_PACKAGING_FINISH)
  if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(MAB_DEBIAN_LAYOUT ON)
    set(MAB_NGINX_INSTALL_DIR lib/nginx/modules)
    set(MAB_PYTHON_INSTALL_DIR lib/python3/dist-packages)
  else()
    set(MAB_DEBIAN_LAYOUT OFF)
    set(MAB_NGINX_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/mab/nginx)
    set(MAB_PYTHON_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/mab/python)
  endif()
  # systemd reads /usr/lib/systemd/system and /usr/local/lib/systemd/system.
  set(MAB_SYSTEMD_UNIT_DIR lib/systemd/system)
  # The absolute paths written into the unit and the default config.
  set(MAB_FULL_CONFIG_DIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/mab)
  set(MAB_FULL_STATE_DIR ${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/lib/mab)
  return()
endif()

set(MAB_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
set(MAB_PACKAGING_OUT ${CMAKE_BINARY_DIR}/packaging)

# Man pages (docs/man, plain roff), gzipped (gzip -n: no name or time stamp,
# so the same page gives the same file), each with the package of its program.
set(mab_man_pages mab.1 mab-config.5)
if(MAB_WITH_MABD)
  list(APPEND mab_man_pages mabd.8)
endif()
foreach(page ${mab_man_pages})
  add_custom_command(OUTPUT ${MAB_PACKAGING_OUT}/man/${page}.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${MAB_PACKAGING_OUT}/man
    COMMAND gzip -9n -c ${PROJECT_SOURCE_DIR}/docs/man/${page} > ${MAB_PACKAGING_OUT}/man/${page}.gz
    DEPENDS ${PROJECT_SOURCE_DIR}/docs/man/${page})
  list(APPEND mab_man_gz ${MAB_PACKAGING_OUT}/man/${page}.gz)
endforeach()
add_custom_target(mab_man_pages ALL DEPENDS ${mab_man_gz})
install(FILES ${MAB_PACKAGING_OUT}/man/mab.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
        COMPONENT mab-tools)
install(FILES ${MAB_PACKAGING_OUT}/man/mab-config.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5
        COMPONENT mab-tools)
if(MAB_WITH_MABD)
  install(FILES ${MAB_PACKAGING_OUT}/man/mabd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8
          COMPONENT mabd)

  # The unit and the default config name the installed paths.
  configure_file(${MAB_PACKAGING_DIR}/mabd.service.in ${MAB_PACKAGING_OUT}/mabd.service @ONLY)
  configure_file(${MAB_PACKAGING_DIR}/mabd.json.in ${MAB_PACKAGING_OUT}/mabd.json @ONLY)
  install(FILES ${MAB_PACKAGING_OUT}/mabd.service DESTINATION ${MAB_SYSTEMD_UNIT_DIR}
          COMPONENT mabd)
  # /etc/mab for the prefix /usr, <prefix>/etc/mab otherwise, decided at
  # install time: `cmake --install --prefix DIR` of a /usr tree (or CPack's
  # staging, which keeps /usr and sets DESTDIR) writes under DIR, not to /etc.
  install(CODE "
    if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
      set(mab_config_dir \"/etc/mab\")
    else()
      set(mab_config_dir \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SYSCONFDIR}/mab\")
    endif()
    file(INSTALL DESTINATION \"\${mab_config_dir}\" TYPE FILE FILES \"${MAB_PACKAGING_OUT}/mabd.json\")"
    COMPONENT mabd)
endif()
if(MAB_WITH_NGINX)
  # Debian's way of enabling a module: a load_module line in
  # modules-available, linked from /etc/nginx/modules-enabled by postinst.
  file(RELATIVE_PATH mab_nginx_conf_path /usr/lib/nginx
       ${CMAKE_INSTALL_PREFIX}/${MAB_NGINX_INSTALL_DIR}/ngx_http_mab_module.so)
  if(NOT MAB_DEBIAN_LAYOUT)
    set(mab_nginx_conf_path ${CMAKE_INSTALL_PREFIX}/${MAB_NGINX_INSTALL_DIR}/ngx_http_mab_module.so)
  endif()
  file(WRITE ${MAB_PACKAGING_OUT}/mod-http-mab.conf "load_module ${mab_nginx_conf_path};\n")
  install(FILES ${MAB_PACKAGING_OUT}/mod-http-mab.conf
          DESTINATION ${CMAKE_INSTALL_DATADIR}/nginx/modules-available
          COMPONENT libnginx-mod-http-mab)
endif()

# ---- Debian packages: `cmake --build build --target package` ----------------
# One .deb per component. Build them from a tree configured with
# -DCMAKE_INSTALL_PREFIX=/usr (docs/install.md); CPACK_PRE_BUILD_SCRIPTS
# refuses any other prefix, since the maintainer scripts and the unit name
# /usr, /etc and /var.
find_program(MAB_DPKG dpkg)
if(NOT MAB_DPKG)
  message(STATUS "Debian packages: dpkg not found, the package target is not configured")
  return()
endif()
execute_process(COMMAND ${MAB_DPKG} --print-architecture
                OUTPUT_VARIABLE mab_deb_arch OUTPUT_STRIP_TRAILING_WHITESPACE)

set(MAB_PACKAGE_MAINTAINER "mab maintainers <mab-maintainers@example.org>" CACHE STRING
    "The Maintainer field of the Debian packages")
set(MAB_PACKAGE_RELEASE 1 CACHE STRING "The Debian revision of the packages (VERSION-RELEASE)")
set(mab_deb_version ${PROJECT_VERSION}-${MAB_PACKAGE_RELEASE})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mab)
set(CPACK_PACKAGE_VENDOR "mab")
set(CPACK_PACKAGE_CONTACT ${MAB_PACKAGE_MAINTAINER})
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # NAME_VERSION-RELEASE_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE ${MAB_PACKAGE_RELEASE})
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${mab_deb_arch})
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.org/mab")
# dpkg-shlibdeps finds the Debian libraries each binary links; libmab itself
# is in no installed package, so the explicit Depends below name libmab1.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_BINARY_DIR}/lib)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Descriptions: the first line is the synopsis; CPack indents the rest and
# turns an empty line into the " ." of a new paragraph. CPack would put the
# package summary on top of each unless it is its own default text.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_SOURCE_DIR}/cmake/packaging-check.cmake)
# For that script (CPack's own CPACK_PACKAGING_INSTALL_PREFIX is /usr for DEB
# whatever the tree was configured with).
set(CPACK_MAB_CONFIGURED_PREFIX ${CMAKE_INSTALL_PREFIX})

set(mab_same "(= ${mab_deb_version})")
set(mab_components libmab1 libmab-dev mab-tools)
set(CPACK_DEBIAN_LIBMAB1_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_LIBMAB1_DESCRIPTION "multi-armed bandit engine - shared library and plugins
libmab chooses among the arms of experiments with a policy (epsilon-greedy,
softmax, UCB1, Thompson sampling) and keeps their counters in a storage
(json_file, lmdb, mongodb), all loaded as plugins from a JSON config.

This package holds libmab.so.1 and the shipped policy and storage plugins.")
# A shlibs file (no symbols file) for packages built against libmab, and the
# ldconfig trigger.
file(WRITE ${MAB_PACKAGING_OUT}/libmab1/shlibs
     "libmab ${MAB_SOVERSION} libmab1 (>= ${PROJECT_VERSION})\n")
configure_file(${MAB_PACKAGING_DIR}/debian/libmab1.triggers ${MAB_PACKAGING_OUT}/libmab1/triggers
               COPYONLY)
set(CPACK_DEBIAN_LIBMAB1_PACKAGE_CONTROL_EXTRA
    ${MAB_PACKAGING_OUT}/libmab1/shlibs ${MAB_PACKAGING_OUT}/libmab1/triggers)

set(CPACK_DEBIAN_LIBMAB-DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_LIBMAB-DEV_PACKAGE_DEPENDS "libmab1 ${mab_same}")
set(CPACK_DEBIAN_LIBMAB-DEV_DESCRIPTION "multi-armed bandit engine - development files
The headers of libmab (mab.h, adapter.h, policy.h, storage.h, plugin.h),
its pkg-config file mab.pc and its CMake package (find_package(mab)), for
programs embedding the engine and for policy and storage plugins.")

set(CPACK_DEBIAN_MAB-TOOLS_PACKAGE_DEPENDS "libmab1 ${mab_same}")
set(CPACK_DEBIAN_MAB-TOOLS_DESCRIPTION "multi-armed bandit engine - command line tool
mab checks a config, chooses arms, records rewards, prints, resets, exports
and imports counters, simulates policies on known arms and creates cookie
signing keys.")

if(MAB_WITH_MABD)
  list(APPEND mab_components mabd)
  set(CPACK_DEBIAN_MABD_PACKAGE_SECTION httpd)
  # mab-tools: the unit's config test and postinst's `mab keygen`; adduser:
  # the mab system user.
  set(CPACK_DEBIAN_MABD_PACKAGE_DEPENDS "libmab1 ${mab_same}, mab-tools ${mab_same}, adduser")
  set(CPACK_DEBIAN_MABD_DESCRIPTION "multi-armed bandit engine - HTTP server
mabd serves the experiments of a mab config over HTTP: choose an arm (sticky
through a signed cookie), count rewards once per assignment, reward and
redirect, with a dashboard and Prometheus metrics. The package runs it as
the systemd service mabd, as the system user mab, with its counters in
LMDB under /var/lib/mab.")
  configure_file(${MAB_PACKAGING_DIR}/debian/mabd.conffiles.in
                 ${MAB_PACKAGING_OUT}/mabd/conffiles @ONLY)
  foreach(script postinst prerm postrm)
    configure_file(${MAB_PACKAGING_DIR}/debian/mabd.${script}.in
                   ${MAB_PACKAGING_OUT}/mabd/${script} @ONLY
                   FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
                                    GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  endforeach()
  set(CPACK_DEBIAN_MABD_PACKAGE_CONTROL_EXTRA
      ${MAB_PACKAGING_OUT}/mabd/conffiles ${MAB_PACKAGING_OUT}/mabd/postinst
      ${MAB_PACKAGING_OUT}/mabd/prerm ${MAB_PACKAGING_OUT}/mabd/postrm)
endif()

if(MAB_WITH_NGINX)
  list(APPEND mab_components libnginx-mod-http-mab)
  # A module works only in the nginx whose ABI it was built for: Debian's
  # nginx packages provide nginx-abi-VERSION-N, and its modules depend on it.
  execute_process(COMMAND dpkg-query -W -f=\${Provides} nginx
                  OUTPUT_VARIABLE mab_nginx_provides ERROR_QUIET)
  string(REGEX MATCH "nginx-abi-[0-9.]+-[0-9]+" mab_nginx_abi "${mab_nginx_provides}")
  if(NOT mab_nginx_abi)
    message(STATUS "Debian packages: the nginx package (nginx-abi-*) is not installed; "
            "libnginx-mod-http-mab depends on nginx alone")
    set(mab_nginx_abi nginx)
  endif()
  set(CPACK_DEBIAN_LIBNGINX-MOD-HTTP-MAB_PACKAGE_SECTION httpd)
  set(CPACK_DEBIAN_LIBNGINX-MOD-HTTP-MAB_PACKAGE_DEPENDS "${mab_nginx_abi}, libmab1 ${mab_same}")
  set(CPACK_DEBIAN_LIBNGINX-MOD-HTTP-MAB_PACKAGE_RECOMMENDS nginx)
  set(CPACK_DEBIAN_LIBNGINX-MOD-HTTP-MAB_DESCRIPTION "multi-armed bandit experiments in nginx
ngx_http_mab_module chooses arms into nginx variables (mab_choose), counts
rewards (mab_reward) and rewards then redirects (mab_reward_redirect), with
the experiments of a mab config (mab_config). Installing the package enables
it in /etc/nginx/modules-enabled, the way Debian's nginx modules are.")
  foreach(script postinst prerm postrm)
    configure_file(${MAB_PACKAGING_DIR}/debian/nginx-module.${script}
                   ${MAB_PACKAGING_OUT}/libnginx-mod-http-mab/${script} COPYONLY
                   FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
                                    GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  endforeach()
  set(CPACK_DEBIAN_LIBNGINX-MOD-HTTP-MAB_PACKAGE_CONTROL_EXTRA
      ${MAB_PACKAGING_OUT}/libnginx-mod-http-mab/postinst
      ${MAB_PACKAGING_OUT}/libnginx-mod-http-mab/prerm
      ${MAB_PACKAGING_OUT}/libnginx-mod-http-mab/postrm)
endif()

if(MAB_WITH_PYTHON)
  list(APPEND mab_components python3-mab)
  set(CPACK_DEBIAN_PYTHON3-MAB_PACKAGE_SECTION python)
  set(CPACK_DEBIAN_PYTHON3-MAB_PACKAGE_ARCHITECTURE all)
  set(CPACK_DEBIAN_PYTHON3-MAB_PACKAGE_DEPENDS "python3, libmab1 ${mab_same}")
  set(CPACK_DEBIAN_PYTHON3-MAB_PACKAGE_SUGGESTS "python3-flask")
  set(CPACK_DEBIAN_PYTHON3-MAB_DESCRIPTION "multi-armed bandit engine - Python binding and Flask extension
The mab Python package drives libmab through ctypes (no compiled
extension): engines, the request hooks with signed sticky cookies, and
mab.flask, a Flask extension replacing Flask-MAB.")
endif()

# Every package ships its copyright and changelog in /usr/share/doc/PACKAGE
# (Debian policy 12.5 and 12.7).
execute_process(COMMAND date -u -R OUTPUT_VARIABLE mab_deb_date OUTPUT_STRIP_TRAILING_WHITESPACE)
if(DEFINED ENV{SOURCE_DATE_EPOCH})
  execute_process(COMMAND date -u -R -d @$ENV{SOURCE_DATE_EPOCH}
                  OUTPUT_VARIABLE mab_deb_date OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
foreach(component ${mab_components})
  set(MAB_DEB_PACKAGE ${component})
  set(MAB_DEB_VERSION ${mab_deb_version})
  set(MAB_DEB_DATE ${mab_deb_date})
  set(out ${MAB_PACKAGING_OUT}/doc/${component})
  configure_file(${MAB_PACKAGING_DIR}/debian/changelog.in ${out}/changelog.Debian @ONLY)
  # gzip -n: no name or time stamp in the file (reproducible, lintian).
  add_custom_command(OUTPUT ${out}/changelog.Debian.gz
    COMMAND gzip -9nf -k ${out}/changelog.Debian
    DEPENDS ${out}/changelog.Debian VERBATIM)
  list(APPEND mab_deb_docs ${out}/changelog.Debian.gz)
  install(FILES ${MAB_PACKAGING_DIR}/debian/copyright ${out}/changelog.Debian.gz
          DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${component} COMPONENT ${component})
endforeach()
add_custom_target(mab_deb_docs ALL DEPENDS ${mab_deb_docs})

# Each package is named after its component (not mab-COMPONENT).
foreach(component ${mab_components})
  string(TOUPPER ${component} upper)
  set(CPACK_DEBIAN_${upper}_PACKAGE_NAME ${component})
endforeach()
set(CPACK_COMPONENTS_ALL ${mab_components})
include(CPack)
