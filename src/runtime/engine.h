/* An engine = a model bound to a backend with its KV cache. Internal view for tests and tools. */
#ifndef LOP_RUNTIME_ENGINE_H
#define LOP_RUNTIME_ENGINE_H
#include "runtime/backend.h"

struct lop_engine {
    lop_model *m;
    const lop_backend_ops *ops;
    lop_backend *be;
    lop_engine_opts opts;
};

/* Runs one batch; logits [b->n_out][vocab]. */
static inline lop_status lop_engine_forward(lop_engine *e, const lop_batch *b, float *logits) {
    return e->ops->forward(e->be, b, logits);
}
#endif
