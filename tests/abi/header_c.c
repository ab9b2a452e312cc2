/* The public header alone, as C: every type and macro is usable. */
#include "fibration.h"

int header_c_uses(void);
int header_c_uses(void)
{
    fib_color_options options;
    fib_load_options load;
    fib_progress_fn progress = 0;
    (void)progress;
    return fib_color_options_init(&options, sizeof options) == FIB_OK &&
           fib_load_options_init(&load, sizeof load) == FIB_OK &&
           FIB_VERSION_NUMBER > 0;
}
