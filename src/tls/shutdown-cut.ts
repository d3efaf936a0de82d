/**
 * Connections the server itself cut because it was closing (the end of a
 * graceful stop past --shutdown-timeout, or SIGQUIT). Whoever owned such a
 * connection (a tunnel) sees only that it was destroyed; this says why, so
 * that its line says "cut by the shutdown" at info, as the admin asked for
 * it, instead of a failure (nginx's worker_shutdown_timeout closes what is
 * left without an error of its own).
 */
const cut = new WeakSet<object>();

/** Destroys `conn`, remembering that the shutdown did it. */
export function cutAtShutdown(conn: { destroy(): unknown }): void {
  cut.add(conn);
  conn.destroy();
}

export function wasCutAtShutdown(conn: object): boolean {
  return cut.has(conn);
}
