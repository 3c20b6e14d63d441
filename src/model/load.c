/* lop_model_load: picks the loader from the spec (synth:..., a directory, or a GGUF file). */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

lop_status lop_model_load(const char *spec, const lop_load_opts *opts, lop_model **out) {
    *out = NULL;
    lop_load_opts def = {0};
    if (!opts) opts = &def;
    if (!spec || !*spec) return lop_fail(LOP_ERR_ARG, "no model given");
    lop_model *m = calloc(1, sizeof *m);
    if (!m) return lop_fail(LOP_ERR_OOM, "out of memory");
    m->source = strdup(spec);
    m->cfg.bos_id = m->cfg.eos_id = -1;
    lop_status st;
    if (strncmp(spec, "synth:", 6) == 0) {
        m->format = strdup("synthetic");
        st = lop_load_synth(m, spec + 6, opts);
    } else if (lop_is_dir(spec)) {
        m->format = strdup("hf");
        st = lop_load_hf(m, spec, opts);
    } else if (lop_file_exists(spec)) {
        m->format = strdup("gguf");
        st = lop_load_gguf(m, spec, opts);
    } else {
        st = lop_fail(LOP_ERR_IO, "%s: no such file or directory (expected an HF directory, a .gguf file or synth:PRESET)", spec);
    }
    if (st == LOP_OK && !m->synthetic && !opts->shapes_only) m->weights_loaded = 1;
    if (st == LOP_OK && !m->tok && m->format[0] == 'h') {
        /* HF directories carry their tokenizer beside the weights */
        char *tj = lop_path_join(spec, "tokenizer.json");
        if (!tj) st = lop_fail(LOP_ERR_OOM, "out of memory");
        else {
            if (lop_file_exists(tj)) st = lop_tokenizer_from_hf_json(tj, &m->tok);
            free(tj);
        }
    }
    if (st != LOP_OK) {
        lop_model_free(m);
        return st;
    }
    *out = m;
    return LOP_OK;
}
