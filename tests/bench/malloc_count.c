// LD_PRELOAD counter of malloc/calloc/realloc calls, for tests/bench/allocs.sh: prints
// "mallocs N" to stderr on SIGUSR2 and at exit.
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);
static atomic_ulong n;
void* malloc(size_t s) { atomic_fetch_add_explicit(&n, 1, memory_order_relaxed); return __libc_malloc(s); }
void* calloc(size_t a, size_t b) { atomic_fetch_add_explicit(&n, 1, memory_order_relaxed); return __libc_calloc(a, b); }
void* realloc(void* p, size_t s) { atomic_fetch_add_explicit(&n, 1, memory_order_relaxed); return __libc_realloc(p, s); }
static void dump(int sig) {
  (void)sig;
  char buf[64];
  int len = snprintf(buf, sizeof buf, "mallocs %lu\n", atomic_load(&n));
  write(2, buf, len);
}
__attribute__((constructor)) static void init(void) { signal(SIGUSR2, dump); }
__attribute__((destructor)) static void fini(void) { dump(0); }
