/* Names from files (layer names, node names, paths) written into the
 * command's outputs: a table shows every byte unambiguously, JSON stays
 * valid JSON. Names are arbitrary bytes: an edge list may hold control
 * characters or text that is not UTF-8. */
#include "cli.h"

#include <string.h>

/* Length of the valid UTF-8 sequence at s (NUL-terminated), 0 if invalid.
 * The command sees only the public API, so it does not share the library's
 * validator. */
static size_t utf8_length(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, cp = c & 0x1Fu;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, cp = c & 0x0Fu;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, cp = c & 0x07u;
    else
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* One piece of s as table text into out (at most 16 bytes, NUL-ended);
 * returns the bytes of s consumed. Backslash doubles so that the \xNN
 * escapes of control characters (C0, DEL, C1) and invalid bytes cannot be
 * confused with a name's own text. */
static size_t text_piece(const unsigned char *s, char *out)
{
    size_t n = utf8_length(s);
    bool c1 = n == 2 && s[0] == 0xC2 && s[1] < 0xA0;
    if (n == 0 || (n == 1 && (s[0] < 0x20 || s[0] == 0x7F)) || c1) {
        size_t k = n ? n : 1;
        for (size_t i = 0; i < k; i++)
            snprintf(out + 4 * i, 5, "\\x%02x", s[i]);
        return k;
    }
    if (s[0] == '\\') {
        strcpy(out, "\\\\");
        return 1;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return n;
}

void cli_put_text(FILE *f, const char *s)
{
    char piece[16];
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        p += text_piece(p, piece);
        fputs(piece, f);
    }
}

const char *cli_text(char *buf, size_t size, const char *s)
{
    char piece[16];
    size_t used = 0;
    const unsigned char *p = (const unsigned char *)s;
    buf[0] = '\0';
    while (*p) {
        size_t n = text_piece(p, piece), len = strlen(piece);
        if (used + len + 1 > size)
            break; /* never cut an escape or a character */
        memcpy(buf + used, piece, len + 1);
        used += len;
        p += n;
    }
    return buf;
}

void cli_put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_length(p);
        if (n == 0) {
            /* PEP 383's surrogate escape: U+DC80 + byte keeps distinct
             * names distinct (a replacement character would merge them) and
             * Python recovers the bytes with errors="surrogateescape" */
            fprintf(f, "\\u%04x", 0xDC00u + *p);
            n = 1;
        } else if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20 || *p == 0x7F) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fwrite(p, 1, n, f);
        }
        p += n;
    }
    fputc('"', f);
}
