/** The tests' model: the scripted Messages API server the offline demo uses (`src/offline/messages-server.ts`). */
export * from '../../src/offline/messages-server.js';
