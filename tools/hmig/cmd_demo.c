/* hmig demo: the README's demo command. */
#include <stdio.h>

#include "cmd.h"

void cmd_demo_usage(void)
{
	printf("usage: hmig demo [hmig guest options]\n"
	       "The README's demo.  For now it runs the built-in guest with dirty logging\n"
	       "(see 'hmig guest --help'); it becomes a full migration between two local\n"
	       "processes without changing the command.\n");
}

int cmd_demo(int argc, char **argv)
{
	return cmd_guest(argc, argv);
}
