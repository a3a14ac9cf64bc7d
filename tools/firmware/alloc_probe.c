/* Allocation probe for tools/mp_firmware.py: linked into the bench's unix MicroPython with
 * -Wl,--wrap=gc_alloc,--wrap=gc_realloc,--wrap=gc_collect_start. Every allocation the VM asks of its GC heap (calls
 * from other translation units than py/gc.c: m_malloc, m_realloc and the object
 * constructors) passes here. It keeps the largest request and writes a line
 *     @@alloc <bytes> <ok>
 * on stdout for every request of MP_FW_ALLOC_REPORT bytes or more (default 2048), in order
 * with the Python side's own output on the same file descriptor. At exit it writes
 *     @@alloc-largest <bytes> <requests> <bytes requested in all>
 * With MP_FW_ALLOC_FAIL=<bytes> in the environment (the driver sets it with os.putenv
 * once the board has started, for --find-alloc), a request of that size or more fails
 * instead (MemoryError), so that its traceback names the code that asked for it.
 * Not part of any firmware a board runs: a measuring instrument only. */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *__real_gc_alloc(size_t n_bytes, unsigned int alloc_flags);
void *__real_gc_realloc(void *ptr, size_t n_bytes, bool allow_move);
void __real_gc_collect_start(void);

static size_t largest;
static unsigned long requests;
static unsigned long requested;
static size_t report_from = 2048;
static unsigned long collections;

void __wrap_gc_collect_start(void) {
    collections++;
    __real_gc_collect_start();
}

static void say(const char *tag, size_t n, int ok) {
    char line[64];
    int len = snprintf(line, sizeof(line), "@@%s %lu %d\n", tag, (unsigned long)n, ok);
    if (len > 0 && write(1, line, (size_t)len) < 0) {
        /* stdout gone: nothing to tell anyone */
    }
}

static void note(size_t n, const void *p) {
    requests++;
    requested += n;
    if (n > largest) {
        largest = n;
    }
    if (n >= report_from) {
        say("alloc", n, p != NULL);
    }
}

/* A request the diagnostic mode refuses (see the top comment). */
static int refused(size_t n) {
    if (n < report_from) {
        return 0;
    }
    const char *env = getenv("MP_FW_ALLOC_FAIL");
    return env != NULL && *env && n >= (size_t)strtoul(env, NULL, 10);
}

void *__wrap_gc_alloc(size_t n_bytes, unsigned int alloc_flags) {
    void *p = refused(n_bytes) ? NULL : __real_gc_alloc(n_bytes, alloc_flags);
    note(n_bytes, p);
    return p;
}

/* A grow or shrink counts as a request of its new size (realloc(NULL) is an alloc). */
void *__wrap_gc_realloc(void *ptr, size_t n_bytes, bool allow_move) {
    void *p = refused(n_bytes) ? NULL : __real_gc_realloc(ptr, n_bytes, allow_move);
    note(n_bytes, p);
    return p;
}

__attribute__((constructor)) static void probe_start(void) {
    const char *env = getenv("MP_FW_ALLOC_REPORT");
    if (env != NULL && *env) {
        report_from = (size_t)strtoul(env, NULL, 10);
    }
}

__attribute__((destructor)) static void probe_end(void) {
    char line[96];
    int len = snprintf(line, sizeof(line), "@@alloc-largest %lu %lu %lu %lu\n",
                       (unsigned long)largest, requests, requested, collections);
    if (len > 0 && write(1, line, (size_t)len) < 0) {
        /* as above */
    }
}
