/* mpi.c: the only file that calls MPI (built with mpicc's flags when the
 * Makefile finds mpicc, else without WTN_MPI). It starts and ends MPI and
 * gives dist.c its rank, the world size and an in-place sum; dist.c holds
 * the data-parallel logic and no MPI symbol, so that programs linking the
 * kernels with the runtime library alone (the test harnesses) need no MPI
 * libraries. Only main.c calls in here. */
#include <sched.h>
#include <stdlib.h>
#include "wtnrt.h"
#ifdef WTN_MPI
#include <mpi.h>
#endif

/* The world size a launcher announces (Open MPI's mpirun, PMIx, PMI as
 * MPICH's hydra and Slurm's srun --mpi=pmi2 set), or 0 outside one. */
static int launcher_size(void)
{
	static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		const char *v = getenv(vars[i]);
		if (v && atoi(v) > 0)
			return atoi(v);
	}
	/* PMIx announces a rank but not always a size: MPI_Init will tell. */
	return getenv("PMIX_RANK") ? 1 : 0;
}

#ifdef WTN_MPI
static bool started;

static void on_mpi_error(MPI_Comm *comm, int *code, ...)
{
	char text[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(*code, text, &len);
	fflush(stdout);
	fprintf(stderr, "wtn: rank %d of %d: MPI failed (%s), most likely because another rank "
	        "died; ending the job (the last checkpoint written is whole)\n",
	        rt_dist_rank(), rt_dist_size(), text);
	MPI_Abort(*comm, 1);
}

static void sum_in_place(void *buf, long count, bool doubles)
{
	MPI_Datatype type = doubles ? MPI_DOUBLE : MPI_FLOAT;
	size_t elem = doubles ? sizeof(double) : sizeof(float);
	/* MPI counts are int: large tensors go in pieces. */
	for (long done = 0; done < count;) {
		int part = count - done > (1L << 30) ? 1 << 30 : (int)(count - done);
		MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * elem, part, type, MPI_SUM,
		              MPI_COMM_WORLD);
		done += part;
	}
}

/* CPUs this process may run on (mpirun binds ranks to cores or sockets). */
static int cpus_allowed(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) != 0)
		return 0;
	return CPU_COUNT(&set);
}
#endif

int rt_dist_init(RtOptions *o)
{
	int announced = launcher_size();
	rt_dist_sync_bn(o->sync_bn);
	if (!o->mpi && announced <= 1)
		return 0;   /* one process: as if MPI did not exist */
#ifndef WTN_MPI
	fprintf(stderr, "wtn: this binary was built without MPI (no mpicc when the wtn runtime "
	        "was built), so it cannot train data-parallel%s; install libopenmpi-dev and "
	        "openmpi-bin, rebuild wtn (make clean all) and compile the network again\n",
	        announced > 1 ? " on the ranks mpirun started" : "");
	return -1;
#else
	int provided, rank, size;
	/* Only the main thread calls MPI; the pool's threads run kernels. */
	if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
		fprintf(stderr, "wtn: MPI_Init failed\n");
		return -1;
	}
	started = true;
	MPI_Errhandler handler;
	MPI_Comm_create_errhandler(on_mpi_error, &handler);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, handler);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	rt_dist_attach(rank, size, sum_in_place);
	/* Rank 0 prints, writes metrics and checkpoints; the others only compute. */
	if (rank != 0) {
		o->save = o->metrics = NULL;
		if (!freopen("/dev/null", "w", stdout))
			fprintf(stderr, "wtn: rank %d: cannot silence stdout\n", rank);
	}
	/* Threads per rank: the cores mpirun left to it, not the whole machine. */
	if (!o->threads && size > 1) {
		int cpus = cpus_allowed();
		if (cpus > 0)
			o->threads = cpus > 64 ? 64 : cpus;
	}
	return 0;
#endif
}

int rt_dist_finish(int status)
{
#ifdef WTN_MPI
	if (started) {
		fflush(stdout);
		fflush(stderr);
		/* A rank that fails alone would leave the others waiting in a
		 * collective: end them all. */
		if (status != 0 && rt_dist_size() > 1)
			MPI_Abort(MPI_COMM_WORLD, status);
		MPI_Finalize();
		started = false;
	}
#endif
	return status;
}
