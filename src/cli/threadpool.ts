/**
 * Imported first by the CLI, before anything touches libuv's thread pool (it is
 * sized once, at first use). Large file bodies are sent by sendfile(2) on that
 * pool, where a cold page cache blocks a worker instead of the event loop; the
 * default of 4 workers would let four cold files stall every other body, so
 * use 16 (nginx's `aio threads` pool has 32) unless the admin chose a size.
 */
process.env.UV_THREADPOOL_SIZE ??= '16';
export {};
