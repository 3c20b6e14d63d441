/* pruning.json: the record of a depth-pruning run (see report.c for the fields). */
#ifndef LOP_PRUNE_REPORT_H
#define LOP_PRUNE_REPORT_H
#include <cJSON.h>

#include "prune/depth.h"

/* The "calibration" object of a pruning.json (depth and width): source, sampling, the files and
 * every sample's window and token ids; cal NULL = no data used (magnitude). */
cJSON *lop_calib_report(const lop_calib *cal, const char *path);
/* The report object (NULL when out of memory); calib and calib_path may be NULL (magnitude);
 * target_text is the target as the user wrote it. */
cJSON *lop_depth_report(const lop_model *m, const lop_depth_opts *o, const char *target_text,
                        const lop_depth_result *r, const lop_calib *cal, const char *calib_path);
#endif
