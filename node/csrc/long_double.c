/* INCRBYFLOAT and HINCRBYFLOAT arithmetic as Redis does it: in the C `long double`
 * (80-bit extended precision on x86-64), parsed with strtold and printed with
 * "%.17Lf" minus trailing zeros. Rust has no long double, and an f64 gives other
 * digits (Redis answers 0.1 + 0.2 with "0.3", an f64 sum prints 0.30000000000000004),
 * so these two functions are written in C and called through node/src/cmd/float.rs.
 * Text goes in and out; no long double crosses the boundary. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest float text accepted, as Redis' MAX_LONG_DOUBLE_CHARS. */
#define MAX_CHARS (5 * 1024)

/* Redis' string2ld: the whole text must be a number for strtold (a NUL byte inside
 * ends it early, so it is refused too), with no leading space; NaN and overflowing
 * or underflowing values are refused. */
static int parse(const char *s, size_t len, long double *out) {
    char buf[MAX_CHARS];
    char *end;
    long double v;
    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtold(buf, &end);
    if (isspace((unsigned char)buf[0]) || *end != '\0' || (size_t)(end - buf) != len ||
        (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || fpclassify(v) == FP_ZERO)) ||
        isnan(v))
        return 0;
    *out = v;
    return 1;
}

/* 1 if `s` is a float as above and finite, 0 if it is not a float, -1 if it is an
 * infinity. */
int ringcache_ld_check(const char *s, size_t len) {
    long double v;
    if (!parse(s, len, &v)) return 0;
    return isinf(v) ? -1 : 1;
}

/* Writes base + incr into `out` (base NULL counts as 0). Returns the text's length,
 * or -1 when base is not a float, -2 when incr is not a float, -3 when the sum is
 * NaN or infinite, -4 when `out` is too small. */
long ringcache_ld_add(const char *base, size_t base_len, const char *incr, size_t incr_len, char *out,
                      size_t out_len) {
    long double a = 0, b, sum;
    int n;
    if (base != NULL && !parse(base, base_len, &a)) return -1;
    if (!parse(incr, incr_len, &b)) return -2;
    sum = a + b;
    if (isnan(sum) || isinf(sum)) return -3;
    n = snprintf(out, out_len, "%.17Lf", sum);
    if (n < 0 || (size_t)n + 1 > out_len) return -4;
    if (memchr(out, '.', (size_t)n) != NULL) {
        while (out[n - 1] == '0') n--;
        if (out[n - 1] == '.') n--;
    }
    if (n == 2 && out[0] == '-' && out[1] == '0') {
        out[0] = '0';
        n = 1;
    }
    return n;
}
