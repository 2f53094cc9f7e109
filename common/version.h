/*
 * version.h - the version of this build, for --version and file metadata.
 */
#ifndef SACCADE_VERSION_H
#define SACCADE_VERSION_H

/* "0.1.0-g1a2b3c4-dirty": scripts/version.sh's description of the git checkout the build came
 * from (X.Y.Z[-N-gHASH] under a vX.Y.Z tag), or the project version (meson.build) outside git.
 * A static string. */
const char *sac_version(void);

#endif
