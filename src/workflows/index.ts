/** Workflow entry points registered with the worker. */
export { agentSession } from './session.js';
export { tandemResource } from './resource.js';
