/*
 * checkrun.h - the part of every Check suite's main() that is the same: a test case from a
 * list of tests, and the run. A suite's main names its suite, its cases and its tests:
 *
 *     Suite *s = suite_create("vocab");
 *     const TTest *tests[] = {test_tokenize, test_encode_decode, NULL};
 *     check_case(s, "vocab", 0, tests);
 *     return check_run(s);
 *
 * Fixtures and loop tests go on the TCase check_case returns (tcase_add_checked_fixture,
 * tcase_add_loop_test). Depends on Check only, so test_api (a user of the installed library)
 * can use it too.
 */
#ifndef SACCADE_CHECKRUN_H
#define SACCADE_CHECKRUN_H

#include <check.h>

/* A case of s named name (CK_RUN_CASE=name runs it alone) holding tests, a NULL-terminated
 * list, with a timeout of timeout seconds (0: Check's default, CK_DEFAULT_TIMEOUT). */
TCase *check_case(Suite *s, const char *name, double timeout, const TTest *const *tests);
/* Run every case of s with Check's normal output, then free it: main's exit status, 0 when
 * every test passed and 1 otherwise. */
int check_run(Suite *s);

#endif
