/* Calibration data for pruning criteria: n samples of seq_len token ids drawn with a seed.
 * Why its own file: every criterion (depth now, width later) needs the same few windows of text
 * and must record exactly which ones it used (pruning.json), so runs are reproducible.
 * The paper's setting (Shortened LLaMA, after LLM-Pruner): 10 samples x 128 tokens from
 * BookCorpus; lop's default source is the Austen novels in ../shared/data/austen. */
#ifndef LOP_PRUNE_CALIB_H
#define LOP_PRUNE_CALIB_H
#include <stdint.h>

#include "model/model.h"

typedef struct lop_calib_sample {
    int file;          /* index into files[] (-1 for random ids) */
    int64_t offset;    /* first token of the window in that file's token stream */
} lop_calib_sample;

typedef struct lop_calib {
    int n_samples, seq_len;
    uint64_t seed;
    int32_t *tokens;           /* [n_samples * seq_len], sample-major */
    lop_calib_sample *samples; /* [n_samples] */
    char **files;              /* the text files read, in order (NULL for random ids) */
    int64_t *file_tokens;      /* tokens of each file */
    int n_files;
    int random_ids;            /* 1: no text, seeded uniform ids (models without a tokenizer) */
} lop_calib;

/* PATH is a text file or a directory (every *.txt in it, by name). Each file is tokenised whole,
 * without BOS; sample k is a window of seq_len consecutive tokens of one file, its start drawn
 * uniformly over all valid starts of all files (splitmix64 stream of `seed`). Files shorter
 * than seq_len tokens contribute no window; no valid window at all is LOP_ERR_ARG. */
lop_status lop_calib_from_text(const lop_model *m, const char *path, int n_samples, int seq_len, uint64_t seed,
                               lop_calib *out);
/* Seeded uniform token ids in [0, vocab) (for models without a tokenizer, e.g. synthetic ones). */
lop_status lop_calib_random(const lop_model *m, int n_samples, int seq_len, uint64_t seed, lop_calib *out);
void lop_calib_free(lop_calib *c);

#endif
