// SwiftPM needs one source file in a C target; everything lives in include/CP9System.h.
#include "CP9System.h"
