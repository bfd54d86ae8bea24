/**
 * The entry of the lease keeper's thread (lease-keeper-thread.ts): plain JavaScript, so that it can
 * load the compiled keeper from the package, or its TypeScript source in a checkout.
 */
import { importOwn } from '../pool/own-code.mjs';

const { keepLeases } = await importOwn('../actors/lease-keeper-thread');
keepLeases();
