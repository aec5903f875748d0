/* The console language parser: words, quotes, key=value, comments,
 * separators, line numbers, errors, and command_to_text round trips. */
#include "commands/parse.h"
#include "core/error.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static CommandList parse_ok(const char *text)
{
    CommandList l;
    if (parse_commands(text, &l) != 0)
        fail_msg("parse of <<%s>> failed: %s", text, sh_errmsg());
    return l;
}

/* Parses text that must hold one command and returns it (moved out). */
static Command parse_one(const char *text)
{
    CommandList l = parse_ok(text);
    if (l.n != 1)
        fail_msg("<<%s>> gave %d commands, want 1", text, l.n);
    Command c = l.cmds[0];
    free(l.cmds);
    return c;
}

static void assert_pos(const Command *c, int i, const char *want)
{
    const char *got = cmd_pos(c, i);
    if (!got || strcmp(got, want) != 0)
        fail_msg("positional %d is <<%s>>, want <<%s>>", i, got ? got : "(none)", want);
}

static void assert_key(const Command *c, const char *key, const char *want)
{
    const char *got = cmd_get(c, key);
    if (!got || strcmp(got, want) != 0)
        fail_msg("%s= is <<%s>>, want <<%s>>", key, got ? got : "(absent)", want);
}

/* ---- words ----------------------------------------------------------------- */

static void test_words_split_on_blanks(void **state)
{
    (void)state;
    Command c = parse_one("  echo   one\ttwo  three\r\n");
    assert_string_equal(c.name, "echo");
    assert_int_equal(c.n_args, 3);
    assert_int_equal(cmd_n_pos(&c), 3);
    assert_pos(&c, 0, "one");
    assert_pos(&c, 1, "two");
    assert_pos(&c, 2, "three");
    assert_null(cmd_pos(&c, 3));
    assert_int_equal(c.line, 1);
    command_done(&c);
}

static void test_double_quotes_keep_blanks_separators_and_comments(void **state)
{
    (void)state;
    Command c = parse_one("echo \"a b\" \"x;y\" \"#not a comment\" \"tab\there\"");
    assert_int_equal(c.n_args, 4);
    assert_pos(&c, 0, "a b");
    assert_pos(&c, 1, "x;y");
    assert_pos(&c, 2, "#not a comment");
    assert_pos(&c, 3, "tab\there");
    command_done(&c);
}

static void test_double_quote_escapes(void **state)
{
    (void)state;
    /* \" and \\ are escapes; any other backslash is kept */
    Command c = parse_one("echo \"say \\\"hi\\\"\" \"back\\\\slash\" \"keep\\n\" \"it's\"");
    assert_pos(&c, 0, "say \"hi\"");
    assert_pos(&c, 1, "back\\slash");
    assert_pos(&c, 2, "keep\\n");
    assert_pos(&c, 3, "it's");
    command_done(&c);
}

static void test_single_quotes_are_literal(void **state)
{
    (void)state;
    Command c = parse_one("echo 'a \\\" b' 'semi;colon' '#hash' 'say \"x\"'");
    assert_pos(&c, 0, "a \\\" b");
    assert_pos(&c, 1, "semi;colon");
    assert_pos(&c, 2, "#hash");
    assert_pos(&c, 3, "say \"x\"");
    command_done(&c);
}

static void test_empty_quotes_make_an_empty_word(void **state)
{
    (void)state;
    Command c = parse_one("echo \"\" '' end");
    assert_int_equal(c.n_args, 3);
    assert_pos(&c, 0, "");
    assert_pos(&c, 1, "");
    assert_pos(&c, 2, "end");
    command_done(&c);
}

static void test_quotes_join_with_adjacent_text(void **state)
{
    (void)state;
    Command c = parse_one("echo pre\"mid dle\"post 'a'\"b\"");
    assert_int_equal(c.n_args, 2);
    assert_pos(&c, 0, "premid dlepost");
    assert_pos(&c, 1, "ab");
    command_done(&c);
}

static void test_backslash_outside_quotes_is_literal(void **state)
{
    (void)state;
    Command c = parse_one("load C:\\models\\net.onnx");
    assert_pos(&c, 0, "C:\\models\\net.onnx");
    command_done(&c);
}

/* ---- key=value ----------------------------------------------------------- */

static void test_key_value_arguments(void **state)
{
    (void)state;
    Command c = parse_one("data fashion-mnist split=test limit=20 normalize=0.5,0.25 my_key.x-y=1");
    assert_string_equal(c.name, "data");
    assert_int_equal(cmd_n_pos(&c), 1);
    assert_pos(&c, 0, "fashion-mnist");
    assert_key(&c, "split", "test");
    assert_key(&c, "limit", "20");
    assert_key(&c, "normalize", "0.5,0.25");
    assert_key(&c, "my_key.x-y", "1");
    assert_null(cmd_get(&c, "path"));
    command_done(&c);
}

static void test_key_value_quoted_empty_and_with_equals(void **state)
{
    (void)state;
    Command c = parse_one("run path=\"my models/a b.onnx\" empty= quoted_empty=\"\" eq=a=b=c q='x;y'");
    assert_int_equal(cmd_n_pos(&c), 0);
    assert_key(&c, "path", "my models/a b.onnx");
    assert_key(&c, "empty", "");
    assert_key(&c, "quoted_empty", "");
    assert_key(&c, "eq", "a=b=c");
    assert_key(&c, "q", "x;y");
    command_done(&c);
}

static void test_words_that_are_not_key_value(void **state)
{
    (void)state;
    /* a quoted '=', a leading '=', a key with a character keys may not
     * have, and the command name itself stay positional */
    Command c = parse_one("set=x \"k=v\" =v a/b=c 'x'=y");
    assert_string_equal(c.name, "set=x");
    assert_int_equal(cmd_n_pos(&c), 4);
    assert_pos(&c, 0, "k=v");
    assert_pos(&c, 1, "=v");
    assert_pos(&c, 2, "a/b=c");
    assert_pos(&c, 3, "x=y");
    assert_null(cmd_get(&c, "k"));
    command_done(&c);
}

static void test_last_repeated_key_wins(void **state)
{
    (void)state;
    Command c = parse_one("eval batch=8 batch=16");
    assert_key(&c, "batch", "16");
    command_done(&c);
}

/* ---- separators, comments, lines -------------------------------------------- */

static void test_semicolons_and_newlines_separate_commands(void **state)
{
    (void)state;
    CommandList l = parse_ok("help;echo a ; echo b\n\ninfo\n;;\n  ;  \nset batch 8");
    assert_int_equal(l.n, 5);
    assert_string_equal(l.cmds[0].name, "help");
    assert_string_equal(l.cmds[1].name, "echo");
    assert_pos(&l.cmds[1], 0, "a");
    assert_string_equal(l.cmds[2].name, "echo");
    assert_pos(&l.cmds[2], 0, "b");
    assert_string_equal(l.cmds[3].name, "info");
    assert_string_equal(l.cmds[4].name, "set");
    int lines[5] = {1, 1, 1, 3, 6};
    for (int i = 0; i < 5; i++)
        assert_int_equal(l.cmds[i].line, lines[i]);
    command_list_done(&l);
}

static void test_comments_run_to_the_end_of_the_line(void **state)
{
    (void)state;
    CommandList l = parse_ok("# a header; not a command\necho a # trailing; echo hidden\n  # indented\necho b#glued");
    assert_int_equal(l.n, 2);
    assert_int_equal(l.cmds[0].n_args, 1);
    assert_pos(&l.cmds[0], 0, "a");
    assert_int_equal(l.cmds[0].line, 2);
    assert_int_equal(l.cmds[1].n_args, 1);
    assert_pos(&l.cmds[1], 0, "b");
    assert_int_equal(l.cmds[1].line, 4);
    command_list_done(&l);
}

static void test_empty_text_gives_no_commands(void **state)
{
    (void)state;
    static const char *texts[] = {"", "   ", "\n\n", ";;;", "# only a comment", " ; # x\n ;"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        CommandList l = parse_ok(texts[i]);
        assert_int_equal(l.n, 0);
        command_list_done(&l);
    }
}

static void test_line_numbers_count_newlines_inside_quotes(void **state)
{
    (void)state;
    CommandList l = parse_ok("echo \"two\nlines\"\necho after\n\n\necho last");
    assert_int_equal(l.n, 3);
    assert_int_equal(l.cmds[0].line, 1);
    assert_pos(&l.cmds[0], 0, "two\nlines");
    assert_int_equal(l.cmds[1].line, 3);
    assert_int_equal(l.cmds[2].line, 6);
    command_list_done(&l);
}

static void test_unterminated_quote_names_the_line_it_opens(void **state)
{
    (void)state;
    CommandList l = {.n = 99};
    assert_int_equal(parse_commands("echo ok\nload \"models/net.onnx\nhelp\n", &l), SH_E_ARG);
    if (!strstr(sh_errmsg(), "line 2"))
        fail_msg("message \"%s\" should name line 2", sh_errmsg());
    assert_true(strstr(sh_errmsg(), "unterminated") != NULL);
    assert_int_equal(l.n, 0);
    assert_null(l.cmds);

    assert_int_equal(parse_commands("echo 'never closed", &l), SH_E_ARG);
    assert_true(strstr(sh_errmsg(), "line 1") != NULL);
    /* an escaped quote does not close; a backslash at the very end neither */
    assert_int_equal(parse_commands("\n\n\necho \"a\\\"", &l), SH_E_ARG);
    assert_true(strstr(sh_errmsg(), "line 4") != NULL);
    assert_int_equal(parse_commands("echo \"abc\\", &l), SH_E_ARG);
}

/* ---- command_to_text ------------------------------------------------------------ */

static void check_round_trip(const Command *c)
{
    char *text = command_to_text(c);
    CommandList l;
    if (parse_commands(text, &l) != 0)
        fail_msg("<<%s>> does not parse: %s", text, sh_errmsg());
    if (l.n != 1)
        fail_msg("<<%s>> gave %d commands", text, l.n);
    const Command *d = &l.cmds[0];
    if (strcmp(d->name, c->name) != 0)
        fail_msg("<<%s>>: name <<%s>>, want <<%s>>", text, d->name, c->name);
    if (d->n_args != c->n_args)
        fail_msg("<<%s>>: %d arguments, want %d", text, d->n_args, c->n_args);
    for (int i = 0; i < c->n_args; i++) {
        const Arg *a = &c->args[i], *b = &d->args[i];
        if ((a->key == NULL) != (b->key == NULL) || (a->key && strcmp(a->key, b->key) != 0) ||
            strcmp(a->value, b->value) != 0)
            fail_msg("<<%s>>: argument %d is %s=<<%s>>, want %s=<<%s>>", text, i,
                     b->key ? b->key : "(pos)", b->value, a->key ? a->key : "(pos)", a->value);
    }
    command_list_done(&l);
    free(text);
}

static void test_command_to_text_round_trips_tricky_words(void **state)
{
    (void)state;
    static const char *words[] = {
        "plain", "", "a b", "semi;colon", "hash#tag", "#start", "dq\"inside", "sq'inside",
        "back\\slash", "trailing\\", "\\\"", "k=v", "=", "=lead", "tab\there", "new\nline",
        "both \"\\ end\\", "'", "\"", "a;b#c d'e\"f=g", "caf\xc3\xa9", "--flag", "1e-3",
    };
    size_t n = sizeof words / sizeof *words;
    /* every word as a positional, as a value, and as the command name */
    for (size_t i = 0; i < n; i++) {
        Arg args[3] = {{NULL, (char *)words[i]}, {(char *)"key", (char *)words[i]},
                       {(char *)"k.2-x_y", (char *)words[i]}};
        Command c = {.name = (char *)"echo", .args = args, .n_args = 3};
        check_round_trip(&c);
        if (words[i][0]) {
            Command named = {.name = (char *)words[i], .args = args, .n_args = 1};
            check_round_trip(&named);
        }
    }
    /* a parsed command written back parses to itself */
    Command c = parse_one("data npy x=\"a b.npy\" y='c;d.npy' \"k=v\" e= tail");
    check_round_trip(&c);
    char *text = command_to_text(&c);
    printf("command_to_text: %s\n", text);
    free(text);
    command_done(&c);
}

static void test_command_to_text_plain_words_are_not_quoted(void **state)
{
    (void)state;
    Command c = parse_one("data fashion-mnist split=test limit=20 normalize=0.5,0.25");
    char *text = command_to_text(&c);
    assert_string_equal(text, "data fashion-mnist split=test limit=20 normalize=0.5,0.25");
    free(text);
    command_done(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words_split_on_blanks),
        cmocka_unit_test(test_double_quotes_keep_blanks_separators_and_comments),
        cmocka_unit_test(test_double_quote_escapes),
        cmocka_unit_test(test_single_quotes_are_literal),
        cmocka_unit_test(test_empty_quotes_make_an_empty_word),
        cmocka_unit_test(test_quotes_join_with_adjacent_text),
        cmocka_unit_test(test_backslash_outside_quotes_is_literal),
        cmocka_unit_test(test_key_value_arguments),
        cmocka_unit_test(test_key_value_quoted_empty_and_with_equals),
        cmocka_unit_test(test_words_that_are_not_key_value),
        cmocka_unit_test(test_last_repeated_key_wins),
        cmocka_unit_test(test_semicolons_and_newlines_separate_commands),
        cmocka_unit_test(test_comments_run_to_the_end_of_the_line),
        cmocka_unit_test(test_empty_text_gives_no_commands),
        cmocka_unit_test(test_line_numbers_count_newlines_inside_quotes),
        cmocka_unit_test(test_unterminated_quote_names_the_line_it_opens),
        cmocka_unit_test(test_command_to_text_round_trips_tricky_words),
        cmocka_unit_test(test_command_to_text_plain_words_are_not_quoted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
