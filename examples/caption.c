/* caption.c - caption image files with libsaccade: cc caption.c $(pkg-config --cflags --libs saccade)
 * usage: caption MODEL IMAGE...   prints IMAGE<TAB>caption<TAB>log-probability per image */
#include <saccade.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    char err[512];
    saccade_model *model;
    if (argc < 3) return fprintf(stderr, "usage: %s MODEL IMAGE...\n", argv[0]), 2;
    saccade_set_log_level(SACCADE_LOG_NONE); /* errors are printed below, from err and the captioner */
    if (saccade_model_load(argv[1], &model, err, sizeof(err))) return fprintf(stderr, "%s\n", err), 1;
    saccade_captioner *c = saccade_captioner_create(model);
    int failed = !c;
    for (int i = 2; i < argc && c; i++) {
        saccade_result *r;
        if (saccade_caption_file(c, argv[i], NULL, &r)) {
            fprintf(stderr, "%s\n", saccade_captioner_error(c)); /* names the file */
            failed = 1;
            continue;
        }
        printf("%s\t%s\t%.3f\n", argv[i], saccade_result_text(r, 0), saccade_result_logprob(r, 0));
        saccade_result_free(r);
    }
    saccade_captioner_free(c);
    saccade_model_free(model);
    return failed;
}
