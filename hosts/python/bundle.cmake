# cmake -DLIBMAB=FILE -DPLUGIN_DIR=DIR -DBUNDLE=DIR -P bundle.cmake
# Lays out BUNDLE/libmab.so.1 and BUNDLE/mab/plugins/*.so for the wheel
# (target python-wheel): the build's plugins carry the build tree's rpath,
# replaced here by $ORIGIN/../.., the bundled libmab's directory.
file(REMOVE_RECURSE ${BUNDLE})
file(MAKE_DIRECTORY ${BUNDLE}/mab/plugins)
file(REAL_PATH ${LIBMAB} real)
file(COPY_FILE ${real} ${BUNDLE}/libmab.so.1)
file(GLOB plugins ${PLUGIN_DIR}/*.so)
if(NOT plugins)
  message(FATAL_ERROR "bundle.cmake: no plugins in ${PLUGIN_DIR}")
endif()
foreach(plugin ${plugins})
  get_filename_component(name ${plugin} NAME)
  file(COPY_FILE ${plugin} ${BUNDLE}/mab/plugins/${name})
  file(RPATH_SET FILE ${BUNDLE}/mab/plugins/${name} NEW_RPATH "$ORIGIN/../..")
endforeach()
