/* The verbs of the `fibration` command. To add one: write src/cli/cmd_NAME.c
 * with `int cmd_NAME(int argc, char **argv)` (argv[0] is the verb), add it to
 * src/cli/meson.build, and add one X(...) line below. */
#ifndef FIB_CLI_COMMANDS_H
#define FIB_CLI_COMMANDS_H

/* X(name, one-line summary) */
#define FIB_CLI_COMMANDS(X)                                                   \
    X(analyze, "report fibers, opfibers and covers of every layer")          \
    X(compress, "write the base: one unit per class of every hidden layer")  \
    X(lift, "expand a base written by compress back to full width")          \
    X(break, "compress to the covers, then regrow new random units")         \
    X(graph, "colour a directed graph read from an edge list")

#define FIB_CLI_DECLARE(name, summary) int cmd_##name(int argc, char **argv);
FIB_CLI_COMMANDS(FIB_CLI_DECLARE)
#undef FIB_CLI_DECLARE

#endif
