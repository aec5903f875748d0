#include <stdio.h>
int main(void) { puts("shears"); return 0; }
