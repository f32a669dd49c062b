/* roff output for manual pages generated from the programs' own option tables (torpor --man,
 * torpord --man): escaping and the few requests the pages use. */
#pragma once

#include <stdio.h>

/* s as roff text: '\' and '-' escaped (so a "--flag" is not typeset as a dash), and a line that
 * would start with '.' or '\'' (a request) or with spaces (a break) made plain text. */
void roff_text(FILE *f, const char *s);

/* .TH line: name (upper-cased as pages are), section, the source ("torpor 0.1.0") and the
 * manual's title. No date: a page built twice is the same page. */
void roff_title(FILE *f, const char *name, const char *section, const char *source,
                const char *manual);

/* .SH title (upper case by convention: the caller's text is used as given). */
void roff_section(FILE *f, const char *title);

/* Paragraphs separated by blank lines, each as .PP and its text (lines joined by the filler). */
void roff_paragraphs(FILE *f, const char *text);

/* One option as a tagged paragraph: ".TP" then the bold option words (short, long, argument in
 * italics) and its description. short_name 0 = none; arg NULL = a flag. */
void roff_option(FILE *f, char short_name, const char *name, const char *arg, const char *help);
