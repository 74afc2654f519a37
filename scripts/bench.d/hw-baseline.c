/*
 * The baseline side of scripts/bench hw, run in the QEMU guest: the same operations as the myelin
 * crate's examples/hw_bench.rs, written against Debian's libgpiod (1.6, the GPIO character
 * device's first ABI) and raw i2c-dev ioctls. Built statically by scripts/bench.d/hw.
 *
 *   hw-baseline toggle CHIP OFFSET N
 *   hw-baseline edges CHIP OFFSET PULL N
 *   hw-baseline i2c BUS ADDR N          (BUS is the number N of /dev/i2c-N)
 *   hw-baseline spawn N PROGRAM ARGS... runs PROGRAM N times, one after the other (the i2cget
 *                                       loop: what a script calling i2c-tools pays)
 *
 * Output: one line of key=value fields, as hw_bench prints.
 */
#include <errno.h>
#include <fcntl.h>
#include <gpiod.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "hw-baseline: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

static struct gpiod_line *line_of(const char *chip, const char *offset, struct gpiod_chip **c)
{
	struct gpiod_line *line;

	*c = gpiod_chip_open_lookup(chip);
	if (!*c)
		die(chip);
	line = gpiod_chip_get_line(*c, (unsigned int)atoi(offset));
	if (!line)
		die("line");
	return line;
}

static int toggle(char **argv)
{
	struct gpiod_chip *chip;
	struct gpiod_line *line = line_of(argv[2], argv[3], &chip);
	long n = atol(argv[4]);
	uint64_t t0;

	if (gpiod_line_request_output(line, "hw-baseline", 0) < 0)
		die("request output");
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (gpiod_line_set_value(line, (i & 1) == 0) < 0)
			die("set value");
	printf("op=toggle n=%ld seconds=%.6f\n", n, (double)(now_ns() - t0) / 1e9);
	gpiod_chip_close(chip);
	return 0;
}

static int edges(char **argv)
{
	struct gpiod_chip *chip;
	struct gpiod_line *line = line_of(argv[2], argv[3], &chip);
	long n = atol(argv[5]);
	uint64_t *total = calloc((size_t)n, sizeof(uint64_t));
	uint64_t *from_irq = calloc((size_t)n, sizeof(uint64_t));
	struct timespec timeout = { .tv_sec = 10 };
	struct gpiod_line_event ev;
	int pull = open(argv[4], O_WRONLY);
	uint64_t t0;

	if (pull < 0 || !total || !from_irq)
		die(argv[4]);
	if (pwrite(pull, "pull-down", 9, 0) < 0)
		die("pull");
	if (gpiod_line_request_both_edges_events(line, "hw-baseline") < 0)
		die("request events");
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		const char *level = i % 2 == 0 ? "pull-up" : "pull-down";
		uint64_t before = now_ns(), after, stamp;

		if (pwrite(pull, level, strlen(level), 0) < 0)
			die("pull");
		if (gpiod_line_event_wait(line, &timeout) != 1)
			die("no edge within 10 s");
		if (gpiod_line_event_read(line, &ev) < 0)
			die("read event");
		after = now_ns();
		stamp = (uint64_t)ev.ts.tv_sec * 1000000000u + (uint64_t)ev.ts.tv_nsec;
		total[i] = after - before;
		from_irq[i] = after > stamp ? after - stamp : 0;
	}
	printf("op=edges n=%ld seconds=%.6f write_to_read_ns=%llu irq_to_read_ns=%llu\n", n,
	       (double)(now_ns() - t0) / 1e9, (unsigned long long)median(total, (size_t)n),
	       (unsigned long long)median(from_irq, (size_t)n));
	gpiod_chip_close(chip);
	return 0;
}

static int i2c(char **argv)
{
	char path[32];
	long n = atol(argv[4]);
	int fd;
	uint64_t t0;

	snprintf(path, sizeof(path), "/dev/i2c-%s", argv[2]);
	fd = open(path, O_RDWR);
	if (fd < 0)
		die(path);
	if (ioctl(fd, I2C_SLAVE, strtol(argv[3], NULL, 16)) < 0)
		die("I2C_SLAVE");
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		union i2c_smbus_data data;
		struct i2c_smbus_ioctl_data args = {
			.read_write = I2C_SMBUS_READ,
			.command = 0,
			.size = I2C_SMBUS_BYTE_DATA,
			.data = &data,
		};

		if (ioctl(fd, I2C_SMBUS, &args) < 0)
			die("I2C_SMBUS");
	}
	printf("op=i2c n=%ld seconds=%.6f\n", n, (double)(now_ns() - t0) / 1e9);
	close(fd);
	return 0;
}

extern char **environ;

static int spawn(int argc, char **argv)
{
	long n = atol(argv[2]);
	uint64_t t0 = now_ns();

	(void)argc;
	for (long i = 0; i < n; i++) {
		pid_t pid;
		int status;

		if (posix_spawnp(&pid, argv[3], NULL, NULL, &argv[3], environ) != 0)
			die(argv[3]);
		if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "hw-baseline: %s failed\n", argv[3]);
			return 1;
		}
	}
	printf("op=spawn n=%ld seconds=%.6f\n", n, (double)(now_ns() - t0) / 1e9);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "toggle") == 0)
		return toggle(argv);
	if (argc == 6 && strcmp(argv[1], "edges") == 0)
		return edges(argv);
	if (argc == 5 && strcmp(argv[1], "i2c") == 0)
		return i2c(argv);
	if (argc >= 4 && strcmp(argv[1], "spawn") == 0)
		return spawn(argc, argv);
	fprintf(stderr, "usage: hw-baseline toggle CHIP OFFSET N | edges CHIP OFFSET PULL N | "
		"i2c BUS ADDR N | spawn N PROGRAM ARGS...\n");
	return 2;
}
