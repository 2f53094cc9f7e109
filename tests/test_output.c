/*
 * test_output.c - the output layer (common/output.c): atomic replacement of regular files,
 * symbolic links followed to their targets, devices and FIFOs written directly and never
 * replaced, write errors (ENOSPC) reported with the file's name, in-place and append modes,
 * outputs that are inputs, the exclusive lock, stdout checked at exit, UTF-8 escaping for JSON
 * and control characters stripped for the terminal.
 *
 * Everything happens in a temporary directory. Device nodes are made there with mknod (as root;
 * skipped otherwise), so a regression that renames over a device replaces only the test's own
 * node, never /dev/null.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkrun.h"
#include "output.h"
#include "sac.h"
#include "safetensors.h"

static char dir[256];
static char logbuf[8192];

static void capture(int level, const char *msg, void *user)
{
    (void)level, (void)user;
    size_t l = strlen(logbuf);
    snprintf(logbuf + l, sizeof(logbuf) - l, "%s\n", msg);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "%s/sac-output.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    logbuf[0] = 0;
    sac_log_set_sink(capture, NULL);
}

static void teardown(void)
{
    sac_log_set_sink(NULL, NULL);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *in_dir(const char *name)
{
    static char paths[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(paths[k], sizeof(paths[k]), "%s/%s", dir, name);
    return paths[k];
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

static char *get(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static int write_text(const char *path, const char *text, int flags)
{
    SacOutput *o = sac_output_open(path, flags);
    if (!o) return SAC_ERR_IO;
    fputs(text, sac_output_stream(o));
    return sac_output_close(o);
}

/* Entries of the test directory whose name starts with '.' (temporary files), "." and ".." aside. */
static int hidden_files(void)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

START_TEST(test_new_file_atomic)
{
    const char *p = in_dir("new.txt");
    SacOutput *o = sac_output_open(p, 0);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(sac_output_is_atomic(o), 1);
    fputs("hello\n", sac_output_stream(o));
    ck_assert_int_eq(sac_output_flush(o), SAC_OK);
    ck_assert_int_eq(access(p, F_OK), -1); /* nothing at the target before the close */
    ck_assert_int_eq(hidden_files(), 1);    /* the temporary file, next to it */
    ck_assert_int_eq(sac_output_close(o), SAC_OK);
    ck_assert_str_eq(get(p), "hello\n");
    ck_assert_int_eq(hidden_files(), 0);
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0644); /* 0666 & ~umask 022 (set in main) */
}
END_TEST

START_TEST(test_replace_keeps_old_until_close)
{
    const char *p = in_dir("old.txt");
    put(p, "old contents\n");
    ck_assert_int_eq(chmod(p, 0640), 0);
    struct stat before, after;
    ck_assert_int_eq(stat(p, &before), 0);
    SacOutput *o = sac_output_open(p, 0);
    ck_assert_ptr_nonnull(o);
    for (int i = 0; i < 20000; i++) fprintf(sac_output_stream(o), "line %d\n", i);
    ck_assert_str_eq(get(p), "old contents\n");
    ck_assert_int_eq(sac_output_close(o), SAC_OK);
    ck_assert_int_eq(stat(p, &after), 0);
    ck_assert(after.st_ino != before.st_ino); /* a new file renamed over the old one */
    ck_assert_int_eq(after.st_mode & 07777, 0640);
    ck_assert(strncmp(get(p), "line 0\nline 1\n", 14) == 0);
    ck_assert(after.st_size > 100000);
    ck_assert_int_eq(hidden_files(), 0);

    /* discarded: the old file stays, the temporary file goes */
    put(p, "keep me\n");
    o = sac_output_open(p, 0);
    ck_assert_ptr_nonnull(o);
    fputs("half written", sac_output_stream(o));
    sac_output_discard(o);
    ck_assert_str_eq(get(p), "keep me\n");
    ck_assert_int_eq(hidden_files(), 0);
}
END_TEST

START_TEST(test_symlink_target_written)
{
    const char *file = in_dir("real.txt"), *l1 = in_dir("link1"), *l2 = in_dir("link2");
    put(file, "before\n");
    ck_assert_int_eq(symlink("real.txt", l1), 0); /* relative links, a chain of two */
    ck_assert_int_eq(symlink("link1", l2), 0);
    ck_assert_int_eq(write_text(l2, "after\n", 0), SAC_OK);
    struct stat sb;
    ck_assert_int_eq(lstat(l2, &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    ck_assert_int_eq(lstat(l1, &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    ck_assert_int_eq(lstat(file, &sb), 0);
    ck_assert(S_ISREG(sb.st_mode));
    ck_assert_str_eq(get(file), "after\n");

    /* a dangling link: its target is created, the link stays a link */
    ck_assert_int_eq(mkdir(in_dir("sub"), 0755), 0);
    ck_assert_int_eq(symlink("sub/made.txt", in_dir("dangling")), 0);
    ck_assert_int_eq(write_text(in_dir("dangling"), "made\n", 0), SAC_OK);
    ck_assert_int_eq(lstat(in_dir("dangling"), &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    ck_assert_str_eq(get(in_dir("sub/made.txt")), "made\n");

    /* a loop of links is an error, not a hang */
    ck_assert_int_eq(symlink("loop2", in_dir("loop1")), 0);
    ck_assert_int_eq(symlink("loop1", in_dir("loop2")), 0);
    ck_assert_ptr_null(sac_output_open(in_dir("loop1"), 0));
    ck_assert_ptr_nonnull(strstr(logbuf, "loop1"));
}
END_TEST

START_TEST(test_fifo_written_directly)
{
    const char *fifo = in_dir("fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    int rd = open(fifo, O_RDONLY | O_NONBLOCK); /* a reader, so the writer's open does not block */
    ck_assert_int_ge(rd, 0);
    SacOutput *o = sac_output_open(fifo, 0);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(sac_output_is_atomic(o), 0);
    fputs("through the pipe", sac_output_stream(o));
    ck_assert_int_eq(sac_output_close(o), SAC_OK);
    char buf[64] = {0};
    ck_assert_int_eq(read(rd, buf, sizeof(buf) - 1), 16);
    ck_assert_str_eq(buf, "through the pipe");
    close(rd);
    struct stat sb;
    ck_assert_int_eq(lstat(fifo, &sb), 0);
    ck_assert(S_ISFIFO(sb.st_mode)); /* still the FIFO */
    ck_assert_int_eq(hidden_files(), 0);
}
END_TEST

/* A character device node in the test directory: 1,3 is null, 1,7 is full. 0 when not allowed. */
static int make_device(const char *name, int minor)
{
    if (geteuid() != 0) return 0;
    return mknod(in_dir(name), S_IFCHR | 0666, makedev(1, minor)) == 0;
}

START_TEST(test_devices_never_replaced)
{
    if (!make_device("null", 3)) {
        fprintf(stderr, "test_devices_never_replaced: skipped (mknod needs root)\n");
        return;
    }
    struct stat before, after;
    ck_assert_int_eq(stat(in_dir("null"), &before), 0);
    ck_assert_int_eq(write_text(in_dir("null"), "discarded\n", 0), SAC_OK);
    ck_assert_int_eq(symlink("null", in_dir("to-null")), 0); /* and through a link */
    ck_assert_int_eq(write_text(in_dir("to-null"), "discarded\n", 0), SAC_OK);
    ck_assert_int_eq(write_text(in_dir("null"), "discarded\n", SAC_OUTPUT_APPEND), SAC_OK);
    ck_assert_int_eq(lstat(in_dir("null"), &after), 0);
    ck_assert(S_ISCHR(after.st_mode));
    ck_assert_int_eq(after.st_ino, before.st_ino);
    ck_assert_int_eq(after.st_rdev, before.st_rdev);
    ck_assert_int_eq(lstat(in_dir("to-null"), &after), 0);
    ck_assert(S_ISLNK(after.st_mode));
    ck_assert_int_eq(hidden_files(), 0);
}
END_TEST

START_TEST(test_write_error_named)
{
    const char *full = make_device("full", 7) ? in_dir("full") : "/dev/full";
    ck_assert_int_eq(write_text(full, "no room\n", 0), SAC_ERR_IO);
    ck_assert_ptr_nonnull(strstr(logbuf, full));
    ck_assert_ptr_nonnull(strstr(logbuf, "write error (No space left on device)"));
    /* a large write fails at the first flush, and the reason is kept until the close */
    logbuf[0] = 0;
    SacOutput *o = sac_output_open(full, 0);
    ck_assert_ptr_nonnull(o);
    for (int i = 0; i < 100000; i++) fputs("0123456789", sac_output_stream(o));
    ck_assert_int_eq(sac_output_flush(o), SAC_ERR_IO);
    ck_assert_int_eq(sac_output_close(o), SAC_ERR_IO);
    ck_assert_ptr_nonnull(strstr(logbuf, "write error (No space left on device)"));
    ck_assert_ptr_null(strstr(strstr(logbuf, "write error") + 1, "write error")); /* said once */
    struct stat sb;
    ck_assert_int_eq(stat(full, &sb), 0);
    ck_assert(S_ISCHR(sb.st_mode));
    logbuf[0] = 0;
    ck_assert_int_eq(sac_output_write_file(full, "x", 1, 0), SAC_ERR_IO);
    ck_assert_ptr_nonnull(strstr(logbuf, "No space left on device"));
}
END_TEST

START_TEST(test_bad_targets)
{
    ck_assert_ptr_null(sac_output_open(dir, 0));
    ck_assert_ptr_nonnull(strstr(logbuf, "is a directory"));
    logbuf[0] = 0;
    ck_assert_ptr_null(sac_output_open(in_dir("no/such/dir/x.txt"), 0));
    ck_assert_ptr_nonnull(strstr(logbuf, "no/such/dir/x.txt"));
    /* a file the user may not write is refused, not replaced (root may write anything) */
    if (geteuid() != 0) {
        put(in_dir("readonly.txt"), "keep\n");
        ck_assert_int_eq(chmod(in_dir("readonly.txt"), 0444), 0);
        ck_assert_ptr_null(sac_output_open(in_dir("readonly.txt"), 0));
        ck_assert_str_eq(get(in_dir("readonly.txt")), "keep\n");
    }
    /* a name as long as a file name may be: the temporary name is cut to fit */
    char name[256];
    memset(name, 'n', 250);
    name[250] = 0;
    ck_assert_int_eq(write_text(in_dir(name), "long\n", 0), SAC_OK);
    ck_assert_str_eq(get(in_dir(name)), "long\n");
    ck_assert_int_eq(hidden_files(), 0);
}
END_TEST

START_TEST(test_in_place_and_append)
{
    const char *p = in_dir("log.txt");
    put(p, "abc\n");
    struct stat before, after;
    ck_assert_int_eq(stat(p, &before), 0);
    ck_assert_int_eq(write_text(p, "def\n", SAC_OUTPUT_APPEND), SAC_OK);
    ck_assert_str_eq(get(p), "abc\ndef\n");
    ck_assert_int_eq(write_text(p, "new\n", SAC_OUTPUT_INPLACE), SAC_OK);
    ck_assert_str_eq(get(p), "new\n");
    ck_assert_int_eq(stat(p, &after), 0);
    ck_assert_int_eq(after.st_ino, before.st_ino); /* the same file, written in place */
    ck_assert_int_eq(write_text(in_dir("fresh.txt"), "x\n", SAC_OUTPUT_APPEND), SAC_OK);
    ck_assert_str_eq(get(in_dir("fresh.txt")), "x\n");
    /* in place through a link writes the target */
    ck_assert_int_eq(symlink("log.txt", in_dir("log-link")), 0);
    ck_assert_int_eq(write_text(in_dir("log-link"), "more\n", SAC_OUTPUT_APPEND), SAC_OK);
    ck_assert_str_eq(get(p), "new\nmore\n");
    ck_assert_int_eq(lstat(in_dir("log-link"), &after), 0);
    ck_assert(S_ISLNK(after.st_mode));
}
END_TEST

START_TEST(test_output_is_input)
{
    char data[512], hard[512], soft[512];
    snprintf(data, sizeof(data), "%s", in_dir("data.json"));
    snprintf(hard, sizeof(hard), "%s", in_dir("hard.json"));
    snprintf(soft, sizeof(soft), "%s", in_dir("soft.json"));
    put(data, "[]\n");
    ck_assert_int_eq(link(data, hard), 0);
    ck_assert_int_eq(symlink("data.json", soft), 0);
    put(in_dir("other.json"), "{}\n");
    const char *inputs[] = {NULL, in_dir("other.json"), data};
    ck_assert_int_eq(sac_same_file(hard, data), 1);
    ck_assert_int_eq(sac_same_file(soft, data), 1);
    ck_assert_int_eq(sac_same_file(in_dir("other.json"), data), 0);
    ck_assert_int_eq(sac_same_file(in_dir("absent"), in_dir("absent")), 0);
    ck_assert_int_eq(sac_output_check_inputs(hard, "--results", inputs, 3), SAC_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(logbuf, "--results"));
    ck_assert_ptr_nonnull(strstr(logbuf, "data.json"));
    ck_assert_int_eq(sac_output_check_inputs(soft, "--results", inputs, 3), SAC_ERR_INVALID);
    ck_assert_int_eq(sac_output_check_inputs(in_dir("new.json"), "--results", inputs, 3), SAC_OK);
    ck_assert_int_eq(sac_output_check_inputs("-", "--results", inputs, 3), SAC_OK);
    ck_assert_str_eq(get(data), "[]\n");
}
END_TEST

START_TEST(test_lock)
{
    const char *p = in_dir("out.jsonl");
    int busy = -1;
    SacLock *a = sac_lock_acquire(p, "saccade batch photos -o out.jsonl", &busy);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(busy, 0);
    char expect[128];
    snprintf(expect, sizeof(expect), "pid %ld: saccade batch photos -o out.jsonl\n", (long)getpid());
    ck_assert_str_eq(get(in_dir("out.jsonl.lock")), expect);
    /* a second holder (another open file description: flock refuses it even in this process) */
    SacLock *b = sac_lock_acquire(p, "second", &busy);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(busy, 1);
    ck_assert_ptr_nonnull(strstr(logbuf, "is in use by another run"));
    expect[strlen(expect) - 1] = 0;
    ck_assert_ptr_nonnull(strstr(logbuf, expect));
    /* another name of the same file shares the lock */
    ck_assert_int_eq(symlink("out.jsonl", in_dir("alias.jsonl")), 0);
    ck_assert_ptr_null(sac_lock_acquire(in_dir("alias.jsonl"), NULL, &busy));
    ck_assert_int_eq(busy, 1);
    sac_lock_release(a);
    ck_assert_int_eq(access(in_dir("out.jsonl.lock"), F_OK), -1);
    /* free again; a lock file left by a killed run does not block (nobody holds the flock) */
    put(in_dir("out.jsonl.lock"), "pid 1: killed\n");
    b = sac_lock_acquire(p, NULL, &busy);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(strstr(get(in_dir("out.jsonl.lock")), "test_output")); /* our command line */
    sac_lock_release(b);
    /* stdout and devices need no lock */
    SacLock *s = sac_lock_acquire("-", NULL, &busy);
    ck_assert_ptr_nonnull(s);
    SacLock *s2 = sac_lock_acquire("-", NULL, &busy);
    ck_assert_ptr_nonnull(s2);
    sac_lock_release(s), sac_lock_release(s2);
}
END_TEST

/* Run fn in a child whose stdout is `target` and whose log goes to a pipe: exit status and log. */
static int child_stdout(const char *target, void (*fn)(void), char *log, size_t size)
{
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        int fd = open(target, O_WRONLY);
        if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) _exit(3);
        dup2(pfd[1], STDERR_FILENO);
        sac_log_set_sink(NULL, NULL);
        fn();
        _exit(sac_stdout_close() ? 1 : 0);
    }
    close(pfd[1]);
    ssize_t n, len = 0;
    while ((n = read(pfd[0], log + len, size - 1 - len)) > 0) len += n;
    log[len] = 0;
    close(pfd[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void print_little(void) { printf("red.png\ta red square\n"); }
static void print_much(void)
{
    for (int i = 0; i < 10000; i++) printf("line %d of many\n", i);
}
static void print_and_flush(void)
{
    print_little();
    sac_stdout_flush(); /* the failure is remembered for the close */
    printf("more\n");
}

START_TEST(test_stdout_checked)
{
    char log[4096];
    const char *full = make_device("full", 7) ? in_dir("full") : "/dev/full";
    ck_assert_int_eq(child_stdout(full, print_little, log, sizeof(log)), 1);
    ck_assert_ptr_nonnull(strstr(log, "stdout: write error (No space left on device)"));
    ck_assert_int_eq(child_stdout(full, print_much, log, sizeof(log)), 1);
    ck_assert_ptr_nonnull(strstr(log, "stdout: write error"));
    ck_assert_int_eq(child_stdout(full, print_and_flush, log, sizeof(log)), 1);
    ck_assert_ptr_nonnull(strstr(log, "stdout: write error (No space left on device)"));
    ck_assert_ptr_null(strstr(strstr(log, "write error") + 1, "write error")); /* said once */
    put(in_dir("captured.txt"), "");
    ck_assert_int_eq(child_stdout(in_dir("captured.txt"), print_much, log, sizeof(log)), 0);
    ck_assert_str_eq(log, "");
    struct stat sb;
    ck_assert_int_eq(stat(in_dir("captured.txt"), &sb), 0);
    ck_assert_int_eq(sb.st_size, 178890); /* sum of the line lengths: every line arrived */
}
END_TEST

START_TEST(test_utf8_escape)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"photos/caf\xc3\xa9.jpg", "photos/caf\xc3\xa9.jpg"},  /* valid: unchanged */
        {"photos/caf\xe9.jpg", "photos/caf\\xe9.jpg"},         /* Latin-1 byte */
        {"a\\xe9b", "a\\xe9b"},                                /* backslashes copied */
        {"\xc0\xaf", "\\xc0\\xaf"},                            /* overlong '/' */
        {"\xed\xa0\x80", "\\xed\\xa0\\x80"},                   /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},          /* above U+10FFFF */
        {"\xe6\x97\xa5\xe6\x97", "\xe6\x97\xa5\\xe6\\x97"},    /* cut short at the end */
        {"\xf0\x9f\x93\xb7 ok", "\xf0\x9f\x93\xb7 ok"},        /* 4-byte sequence */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *e = sac_utf8_escape(cases[i].in);
        ck_assert_ptr_nonnull(e);
        ck_assert_msg(!strcmp(e, cases[i].out), "case %zu: got '%s' expected '%s'", i, e, cases[i].out);
        ck_assert_int_eq(sac_utf8_valid(e), 1);
        ck_assert_int_eq(sac_utf8_valid(cases[i].in), !strcmp(cases[i].in, cases[i].out));
        free(e);
    }
}
END_TEST

START_TEST(test_term_clean)
{
    char a[] = "x\x1b[31mred\x1b[0m\n\ty\x7f";
    ck_assert_str_eq(sac_term_clean(a), "x?[31mred?[0m??y?");
    char b[] = "csi \xc2\x9b" "2J, nbsp \xc2\xa0, caf\xc3\xa9, bad \xff\xfe";
    ck_assert_str_eq(sac_term_clean(b), "csi ?2J, nbsp \xc2\xa0, caf\xc3\xa9, bad ??");
    char c[] = "plain/path.jpg";
    ck_assert_str_eq(sac_term_clean(c), "plain/path.jpg");
}
END_TEST

/* The safetensors writer (model files, checkpoints) goes through the layer. */
START_TEST(test_safetensors_writer_uses_it)
{
    SafeTensorsWriter *w = safetensors_writer_create();
    ck_assert_ptr_nonnull(w);
    const float x[4] = {1, 2, 3, 4};
    const int64_t shape[1] = {4};
    ck_assert_int_eq(safetensors_writer_add_f32(w, "x", 1, shape, x, SAC_DTYPE_F32), 0);
    const char *full = make_device("full", 7) ? in_dir("full") : "/dev/full";
    ck_assert_int_eq(safetensors_writer_write(w, full), SAC_ERR_IO);
    ck_assert_ptr_nonnull(strstr(logbuf, "write error (No space left on device)"));
    struct stat sb;
    ck_assert_int_eq(stat(full, &sb), 0);
    ck_assert(S_ISCHR(sb.st_mode));
    /* through a link: the target is written, the link stays */
    ck_assert_int_eq(mkdir(in_dir("models"), 0755), 0);
    ck_assert_int_eq(symlink("models/m.safetensors", in_dir("current.safetensors")), 0);
    ck_assert_int_eq(safetensors_writer_write(w, in_dir("current.safetensors")), 0);
    ck_assert_int_eq(lstat(in_dir("current.safetensors"), &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    SafeTensors *st = safetensors_read(in_dir("models/m.safetensors"));
    ck_assert_ptr_nonnull(st);
    float y[4];
    ck_assert_int_eq(safetensors_load_f32(st, "x", y, 1, shape), 0);
    ck_assert_float_eq(y[3], 4.0f);
    safetensors_free(st);
    ck_assert_int_eq(hidden_files(), 0);
    safetensors_writer_free(w);
}
END_TEST

int main(void)
{
    umask(022);
    Suite *s = suite_create("output");
    const TTest *tests[] = {test_new_file_atomic, test_replace_keeps_old_until_close, test_symlink_target_written,
        test_fifo_written_directly, test_devices_never_replaced, test_write_error_named, test_bad_targets,
        test_in_place_and_append, test_output_is_input, test_lock, test_stdout_checked, test_utf8_escape,
        test_term_clean, test_safetensors_writer_uses_it, NULL};
    TCase *tc = check_case(s, "core", 0, tests);
    tcase_add_checked_fixture(tc, setup, teardown);
    return check_run(s);
}
