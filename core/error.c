/* error.c - status codes, their descriptions, and filling a mab_error. */
#include <stdarg.h>
#include <stdio.h>

#include "mab/mab.h"

int mab_error_set(mab_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *mab_strerror(int code)
{
    switch (code) {
    case MAB_OK: return "success";
    case MAB_ENOMEM: return "out of memory";
    case MAB_EINVAL: return "invalid argument";
    case MAB_ECONFIG: return "invalid configuration";
    case MAB_EPLUGIN: return "plugin error";
    case MAB_ENOTFOUND: return "no such experiment or arm";
    case MAB_ERANGE: return "value out of range";
    case MAB_ESTORAGE: return "storage error";
    case MAB_EBUSY: return "store in use by another process";
    case MAB_ECORRUPT: return "stored data is corrupt";
    case MAB_EIO: return "I/O error";
    case MAB_ECLAIMED: return "assignment already claimed";
    case MAB_ELATE: return "reward after the attribution window";
    default: return "unknown error code";
    }
}

const char *mab_version(void)
{
    return MAB_VERSION_STRING;
}
