/* core/json.c - the config's JSON parser (RFC 8259) into cJSON nodes held in
 * a few large blocks (json.h). Written from the RFC's grammar:
 *
 *   value  = object / array / string / number / "true" / "false" / "null"
 *   number = [ "-" ] ( "0" / 1-9 *DIGIT ) [ "." 1*DIGIT ] [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ]
 *   string = '"' *( unescaped / "\" ( '"' / "\" / "/" / b / f / n / r / t / uXXXX ) ) '"'
 *   unescaped = %x20-21 / %x23-5B / %x5D-10FFFF (as UTF-8)
 *   ws = *( %x20 / %x09 / %x0A / %x0D )
 *
 * Every node and string comes from the parse's blocks (one malloc per block,
 * not per node): a tree is freed in one sweep of its blocks. Numbers that
 * can be converted exactly are (integers of up to 19 digits, and a mantissa
 * below 2^53 scaled by an exact power of ten up to 10^22: one correctly
 * rounded operation); the others go to strtod in the C locale.
 */
#include "json.h"

#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct block {
    struct block *next;
    size_t cap;
    _Alignas(16) unsigned char data[];
} block;

/* The root lives in the head, so that mab__json_free finds the blocks. */
typedef struct head {
    block *blocks;
    cJSON root;
} head;

#define FIRST_BLOCK ((size_t)4096)
#define MAX_BLOCK ((size_t)64 << 20)

typedef struct parser {
    const unsigned char *text, *p, *end;
    head *h;
    unsigned char *cur, *lim; /* the free part of the newest block */
    size_t next_cap;
    int depth;
    mab__json_error err;
} parser;

static int refuse(parser *P, int reason, const unsigned char *at)
{
    P->err.reason = reason;
    P->err.offset = (size_t)(at - P->text);
    return -1;
}

/* n bytes, 8-aligned, from the newest block or a new one. */
static void *take(parser *P, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if ((size_t)(P->lim - P->cur) < n) {
        size_t cap = P->next_cap;
        while (cap < n)
            cap *= 2;
        block *b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = P->h->blocks;
        b->cap = cap;
        P->h->blocks = b;
        P->cur = b->data;
        P->lim = b->data + cap;
        if (P->next_cap < MAX_BLOCK)
            P->next_cap *= 2;
    }
    void *out = P->cur;
    P->cur += n;
    return out;
}

static cJSON *new_node(parser *P, int type)
{
    cJSON *n = take(P, sizeof *n);
    if (!n) {
        refuse(P, MAB__JSON_ENOMEM, P->p);
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->type = type;
    return n;
}

/* JSON's white space; any other byte below 0x21 is refused by the caller. */
static void skip_ws(parser *P)
{
    const unsigned char *p = P->p, *end = P->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    P->p = p;
}

/* Where a token was expected and the byte at P->p starts none: the reason. */
static int unexpected(parser *P)
{
    if (P->p == P->end)
        return refuse(P, MAB__JSON_ESYNTAX, P->p);
    unsigned char c = *P->p;
    if (c == 0)
        return refuse(P, MAB__JSON_ENUL, P->p);
    if (c < 0x20)
        return refuse(P, MAB__JSON_ESPACE, P->p);
    return refuse(P, MAB__JSON_ESYNTAX, P->p);
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out,
                const unsigned char **bad)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++, p++) {
        if (p >= end) {
            *bad = p;
            return -1;
        }
        unsigned c = *p, d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else {
            *bad = p;
            return -1;
        }
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* The length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0
   with *bad at the first byte that makes it invalid. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end, const unsigned char **bad)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *bad = p;
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (p + i >= end || p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xBF)) {
            *bad = p + i;
            return 0;
        }
    }
    return n;
}

static unsigned char *put_utf8(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *o++ = (unsigned char)(0xC0 | cp >> 6);
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (unsigned char)(0xE0 | cp >> 12);
        *o++ = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (unsigned char)(0xF0 | cp >> 18);
        *o++ = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* Bytes that stand for themselves in a string: 0x20-0x7F but '"' and '\\'. */
static const unsigned char plain_byte[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 0x80-0xFF: 0 */
};

/* The string at P->p (its opening quote), decoded into the blocks. */
static int parse_string(parser *P, char **out)
{
    const unsigned char *s = P->p + 1, *end = P->end, *q = s;
    while (q < end && plain_byte[*q])
        q++;
    if (q < end && *q == '"') { /* no escape, nothing above 0x7F: a copy */
        char *o = take(P, (size_t)(q - s) + 1);
        if (!o)
            return refuse(P, MAB__JSON_ENOMEM, P->p);
        memcpy(o, s, (size_t)(q - s));
        o[q - s] = '\0';
        *out = o;
        P->p = q + 1;
        return 0;
    }
    /* Where the string can end: its closing quote, or the first control
       byte or the end of the text (both an error found below). Escaped
       bytes are skipped. The decoded string is never longer than this. */
    while (q < end && *q != '"' && *q >= 0x20) {
        if (*q == '\\' && q + 1 < end)
            q++;
        q++;
    }
    unsigned char *o = take(P, (size_t)(q - s) + 1);
    if (!o)
        return refuse(P, MAB__JSON_ENOMEM, P->p);
    *out = (char *)o;
    const unsigned char *p = s, *bad = NULL;
    while (p < q) {
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            *o++ = c;
            p++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq(p, q, &bad);
            if (!n)
                return refuse(P, MAB__JSON_EUTF8, bad);
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        /* c == '\\' */
        if (p + 1 >= q)
            return refuse(P, MAB__JSON_ESTRING, p + 1);
        unsigned char e = p[1];
        const unsigned char *esc = p;
        p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp;
            if (hex4(p, q, &cp, &bad))
                return refuse(P, MAB__JSON_EHEX, bad);
            p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) /* a low surrogate first */
                return refuse(P, MAB__JSON_ESTRING, esc);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p + 1 >= q || p[0] != '\\' || p[1] != 'u')
                    return refuse(P, MAB__JSON_ESTRING, p);
                if (hex4(p + 2, q, &lo, &bad))
                    return refuse(P, MAB__JSON_EHEX, bad);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return refuse(P, MAB__JSON_ESTRING, p);
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0)
                return refuse(P, MAB__JSON_ENUL, esc);
            o = put_utf8(o, cp);
            break;
        }
        default:
            return refuse(P, MAB__JSON_ESTRING, p - 1);
        }
    }
    if (q >= end)
        return refuse(P, MAB__JSON_ESTRING, end);
    if (*q != '"')
        return refuse(P, *q == 0 ? MAB__JSON_ENUL : MAB__JSON_ECONTROL, q);
    *o = '\0';
    P->p = q + 1;
    return 0;
}

static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* strtod of the token [s, e) in the C locale: correctly rounded. */
static double slow_number(const unsigned char *s, const unsigned char *e, int *nomem)
{
    char small[64], *buf = small;
    size_t n = (size_t)(e - s);
    if (n >= sizeof small && !(buf = malloc(n + 1))) {
        *nomem = 1;
        return 0;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    pthread_once(&c_locale_once, make_c_locale);
    double v;
    if (c_locale) {
        v = strtod_l(buf, NULL, c_locale);
    } else { /* no locale object: the current locale's decimal point */
        char *dot = memchr(buf, '.', n);
        if (dot)
            *dot = *localeconv()->decimal_point;
        v = strtod(buf, NULL);
    }
    if (buf != small)
        free(buf);
    return v;
}

static int parse_number(parser *P, cJSON *node)
{
    const unsigned char *s = P->p, *p = s, *end = P->end;
    int neg = 0, exact = 1, digits = 0;
    uint64_t mant = 0;
    long exp10 = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p < end && *p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9')
            return refuse(P, MAB__JSON_ENUMBER, p); /* a leading zero */
    } else if (p < end && *p >= '1' && *p <= '9') {
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                exp10++;
                exact = 0;
            }
        }
    } else {
        return refuse(P, MAB__JSON_ENUMBER, p);
    }
    int integer = 1;
    if (p < end && *p == '.') {
        integer = 0;
        p++;
        if (!(p < end && *p >= '0' && *p <= '9'))
            return refuse(P, MAB__JSON_ENUMBER, p);
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (mant == 0 && *p == '0') {
                exp10--;
            } else if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                digits++;
                exp10--;
            } else if (*p != '0') {
                exact = 0;
            }
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (!(p < end && *p >= '0' && *p <= '9'))
            return refuse(P, MAB__JSON_ENUMBER, p);
        long x = 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if (x < 1000000)
                x = x * 10 + (*p - '0');
        exp10 += eneg ? -x : x;
    }
    double v;
    if (exact && integer && exp10 == 0) {
        v = (double)mant; /* one correctly rounded conversion */
    } else if (exact && mant <= ((uint64_t)1 << 53) && exp10 >= -22 && exp10 <= 22) {
        v = exp10 >= 0 ? (double)mant * exact_pow10[exp10] : (double)mant / exact_pow10[-exp10];
    } else if (mant == 0 && exact) {
        v = 0;
    } else {
        int nomem = 0;
        v = slow_number(s, p, &nomem);
        if (nomem)
            return refuse(P, MAB__JSON_ENOMEM, s);
        neg = 0; /* strtod read the sign */
    }
    if (neg)
        v = -v;
    node->valuedouble = v;
    if (v >= INT_MAX)
        node->valueint = INT_MAX;
    else if (v <= (double)INT_MIN)
        node->valueint = INT_MIN;
    else
        node->valueint = (int)v;
    P->p = p;
    return 0;
}

static int literal(parser *P, const char *word)
{
    const unsigned char *p = P->p;
    for (; *word; word++, p++)
        if (p >= P->end || *p != (unsigned char)*word)
            return refuse(P, p < P->end && *p == 0 ? MAB__JSON_ENUL : MAB__JSON_ESYNTAX, p);
    P->p = p;
    return 0;
}

static int parse_value(parser *P, cJSON *node);

/* The members or elements of the object or array at P->p, as node's children. */
static int parse_container(parser *P, cJSON *node, int object)
{
    if (P->depth >= MAB__JSON_MAX_DEPTH)
        return refuse(P, MAB__JSON_EDEPTH, P->p);
    P->depth++;
    unsigned char close = object ? '}' : ']';
    P->p++;
    skip_ws(P);
    cJSON *last = NULL;
    if (P->p < P->end && *P->p == close) {
        P->p++;
        P->depth--;
        return 0;
    }
    for (;;) {
        cJSON *child = new_node(P, 0);
        if (!child)
            return -1;
        if (last) {
            last->next = child;
            child->prev = last;
        } else {
            node->child = child;
        }
        last = child;
        node->child->prev = last; /* cJSON keeps the tail in the head's prev */
        if (object) {
            if (P->p >= P->end || *P->p != '"')
                return unexpected(P);
            if (parse_string(P, &child->string))
                return -1;
            skip_ws(P);
            if (P->p >= P->end || *P->p != ':')
                return unexpected(P);
            P->p++;
            skip_ws(P);
        }
        if (parse_value(P, child))
            return -1;
        skip_ws(P);
        if (P->p < P->end && *P->p == ',') {
            P->p++;
            skip_ws(P);
            continue;
        }
        if (P->p < P->end && *P->p == close) {
            P->p++;
            P->depth--;
            return 0;
        }
        return unexpected(P);
    }
}

static int parse_value(parser *P, cJSON *node)
{
    if (P->p >= P->end)
        return unexpected(P);
    switch (*P->p) {
    case '{':
        node->type = cJSON_Object;
        return parse_container(P, node, 1);
    case '[':
        node->type = cJSON_Array;
        return parse_container(P, node, 0);
    case '"':
        node->type = cJSON_String;
        return parse_string(P, &node->valuestring);
    case 't':
        node->type = cJSON_True;
        node->valueint = 1;
        return literal(P, "true");
    case 'f':
        node->type = cJSON_False;
        return literal(P, "false");
    case 'n':
        node->type = cJSON_NULL;
        return literal(P, "null");
    default:
        if (*P->p == '-' || (*P->p >= '0' && *P->p <= '9')) {
            node->type = cJSON_Number;
            return parse_number(P, node);
        }
        return unexpected(P);
    }
}

static void free_blocks(head *h)
{
    for (block *b = h->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(h);
}

cJSON *mab__json_parse(const char *text, size_t len, mab__json_error *err)
{
    parser P = {.text = (const unsigned char *)text,
                .p = (const unsigned char *)text,
                .end = (const unsigned char *)text + len};
    head *h = calloc(1, sizeof *h);
    if (!h) {
        if (err)
            *err = (mab__json_error){MAB__JSON_ENOMEM, 0};
        return NULL;
    }
    P.h = h;
    /* Blocks grow from about the text's size: a few blocks for any config. */
    P.next_cap = len < FIRST_BLOCK ? FIRST_BLOCK : len > MAX_BLOCK ? MAX_BLOCK : len;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) /* a byte order mark */
        P.p += 3;
    skip_ws(&P);
    int rc = parse_value(&P, &h->root);
    if (rc == 0) {
        skip_ws(&P);
        if (P.p != P.end)
            rc = unexpected(&P);
    }
    if (rc) {
        if (err)
            *err = P.err;
        free_blocks(h);
        return NULL;
    }
    if (err)
        *err = (mab__json_error){MAB__JSON_OK, 0};
    return &h->root;
}

void mab__json_free(cJSON *root)
{
    if (root)
        free_blocks((head *)((char *)root - offsetof(head, root)));
}
