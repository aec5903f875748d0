/* --bench-ui: drives the workbench on an invisible screen with a generated
 * 1,000-node model and measures keystroke-to-redraw time, then the longest
 * UI loop stall while a job runs on the worker thread. Prints the numbers. */
#ifndef SH_TUI_BENCH_UI_H
#define SH_TUI_BENCH_UI_H

#include "app.h"

int bench_ui_run(const AppOptions *opt);

#endif
