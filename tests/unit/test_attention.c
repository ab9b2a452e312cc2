#include "testing.h"
int test_failures;
int main(void){return 0;}
