/* wtn_version.h: the one version string of wtn, shared by wtnc, the
 * runtime, run metadata and the sweep cache's keys. */
#ifndef WTN_VERSION_H
#define WTN_VERSION_H
#define WTN_VERSION "0.5.0"
#endif
