#include <stdio.h>
#include "cmd.h"
int cmd_guest(int argc, char **argv) { (void)argc; (void)argv; return 1; }
void cmd_guest_usage(void) { }
int cmd_demo(int argc, char **argv) { (void)argc; (void)argv; return 1; }
void cmd_demo_usage(void) { }
