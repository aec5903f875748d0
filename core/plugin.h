/* Criterion plugins: shared libraries written against
 * plugins/shears_plugin.h, opened with dlopen and registered beside the
 * builtin criteria, so `score NAME` runs them like any other. */
#ifndef SH_PLUGIN_H
#define SH_PLUGIN_H

#include "importance.h"

/* Loads the plugin at path, checks its ABI version and name, and
 * registers its criterion (*out, may be NULL). Fails naming the file:
 * not loadable, no shears_plugin_info, another ABI version (both
 * versions named), a bad or taken name. A loaded plugin stays loaded. */
int plugin_load(const char *path, const Criterion **out);

#endif
