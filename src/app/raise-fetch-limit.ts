/** Side effect only: main.ts's first import (see fetch-limit.ts). */
import { ensureFetchLimit } from './fetch-limit.ts';

ensureFetchLimit(process.argv.slice(2));
