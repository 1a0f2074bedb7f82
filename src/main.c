/*
 * main.c - fnrun: the gateway daemon and its command-line client.
 */
#include <stdio.h>

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "usage: fnrun serve|check|submit ...\n");
	return 2;
}
