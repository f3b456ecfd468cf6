// SwiftPM needs one source file in a C target; everything lives in include/CKVM.h.
#include "CKVM.h"
