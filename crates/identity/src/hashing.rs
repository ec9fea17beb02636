//! Password hashing on a bounded pool of worker threads, off the async executor.
//!
//! argon2id is deliberately slow and memory-hard; running it on tokio's workers would stall
//! every other call. The pool has a fixed number of threads and a bounded queue: when both are
//! full, a call fails at once with [`HashError::Busy`] (RESOURCE_EXHAUSTED) instead of queueing
//! without bound. No one caller (a key) may hold more than its share of the pool
//! ([`HashingSettings::per_caller`]): a key flooding VerifyPassword — with usernames it cannot
//! see, each costing a full verification — is refused beyond its share while every other
//! key's calls still find room. The caller's tracing span is carried to the worker.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use roster_runtime::places::{Place, Places};

/// argon2id cost and pool size.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct HashingSettings {
    /// Memory cost in KiB (OWASP minimum: 19 MiB).
    pub memory_kib: u32,
    /// Passes over memory (OWASP minimum: 2).
    pub iterations: u32,
    /// Lanes (OWASP minimum: 1).
    pub parallelism: u32,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Hashes waiting for a worker before calls are refused.
    pub queue: usize,
    /// Hashes one caller (one key) may have waiting or running at once; beyond that its calls
    /// are refused while others' still go in. 0: half the queue.
    pub per_caller: usize,
    /// Niceness of the worker threads (0 to 19; Linux). Above 0, the executor's threads and the
    /// database preempt hashing, so other calls stay prompt while verification saturates the
    /// cores, and hashing still takes every idle cycle.
    pub nice: i32,
}

impl Default for HashingSettings {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            workers: 0,
            queue: 64,
            per_caller: 0,
            nice: 10,
        }
    }
}

/// Why hashing did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("every password worker is busy and the queue is full")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The result of verifying a password against a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The stored hash uses weaker parameters than configured now.
    pub needs_rehash: bool,
}

enum Job {
    Hash(SecretString, oneshot::Sender<Result<String, HashError>>),
    Verify(
        SecretString,
        String,
        oneshot::Sender<Result<Verification, HashError>>,
    ),
}

/// A job in the pool with what it was sent with: the caller's span and its place in the
/// caller's share, given back when the job is done.
type Sent = (Job, tracing::Span, Place<String>);

/// Handle on the hashing pool; cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    jobs: SyncSender<Sent>,
    params: Params,
    /// Verified against when a username is unknown, so both refusals cost the same.
    dummy: Arc<String>,
    /// Each caller's places in the pool: jobs waiting or running.
    shares: Arc<Places<String>>,
}

impl Hasher {
    /// Starts the worker threads.
    pub fn start(settings: &HashingSettings) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|error| HashError::Failed(error.to_string()))?;
        let workers = if settings.workers == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            settings.workers
        };
        let (jobs, receiver) = sync_channel(settings.queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let nice = settings.nice.clamp(0, 19);
        for index in 0..workers {
            let receiver = receiver.clone();
            let params = params.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    lower_priority(nice);
                    work(&receiver, &params)
                })
                .map_err(|error| HashError::Failed(error.to_string()))?;
        }
        let dummy = hash_now(
            &mut Scratch::default(),
            &params,
            &SecretString::from("a password nobody has".to_owned()),
        )?;
        let per_caller = match settings.per_caller {
            0 => settings.queue / 2,
            limit => limit,
        };
        Ok(Self {
            jobs,
            params,
            dummy: Arc::new(dummy),
            shares: Places::new(per_caller),
        })
    }

    /// A PHC string of `password` with the configured parameters, for `caller` (a key's name,
    /// whose share of the pool it takes).
    pub async fn hash(&self, caller: &str, password: SecretString) -> Result<String, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(caller, Job::Hash(password, reply))?;
        answer
            .await
            .map_err(|_| HashError::Failed("worker stopped".into()))?
    }

    /// Checks `password` against the stored PHC string, for `caller`.
    pub async fn verify(
        &self,
        caller: &str,
        password: SecretString,
        phc: String,
    ) -> Result<Verification, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(caller, Job::Verify(password, phc, reply))?;
        answer
            .await
            .map_err(|_| HashError::Failed("worker stopped".into()))?
    }

    /// Spends one verification's worth of work for `caller` and answers "no match".
    pub async fn verify_dummy(
        &self,
        caller: &str,
        password: SecretString,
    ) -> Result<(), HashError> {
        self.verify(caller, password, self.dummy.as_ref().clone())
            .await
            .map(|_| ())
    }

    /// The configured memory cost, for tests and benchmarks.
    pub fn params(&self) -> &Params {
        &self.params
    }

    fn submit(&self, caller: &str, job: Job) -> Result<(), HashError> {
        let share = self
            .shares
            .take(&caller.to_owned())
            .ok_or(HashError::Busy)?;
        match self.jobs.try_send((job, tracing::Span::current(), share)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(HashError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(HashError::Failed("pool stopped".into())),
        }
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// The memory argon2 works in, kept by one worker from call to call. Allocating the matrix
/// (19 MiB at the default cost) per call let glibc keep about 200 MiB of freed matrices per
/// hashing thread; one matrix per worker is all that is ever resident.
#[derive(Default)]
struct Scratch {
    blocks: Vec<Block>,
}

impl Scratch {
    /// argon2 of `password` and `salt` by `argon`, `output_len` bytes long.
    fn compute(
        &mut self,
        argon: &Argon2<'_>,
        password: &SecretString,
        salt: Salt<'_>,
        output_len: usize,
    ) -> Result<Output, password_hash::Error> {
        let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
        let salt = salt.decode_b64(&mut salt_bytes)?;
        let needed = argon.params().block_count();
        if self.blocks.len() < needed {
            self.blocks.resize(needed, Block::default());
        }
        let blocks = &mut self.blocks[..needed];
        Output::init_with(output_len, |out| {
            argon
                .hash_password_into_with_memory(
                    password.expose_secret().as_bytes(),
                    salt,
                    out,
                    &mut *blocks,
                )
                .map_err(password_hash::Error::from)
        })
    }
}

fn hash_now(
    scratch: &mut Scratch,
    params: &Params,
    password: &SecretString,
) -> Result<String, HashError> {
    let failed = |error: password_hash::Error| HashError::Failed(error.to_string());
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(failed)?;
    let argon = argon(params);
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let hash = scratch
        .compute(&argon, password, salt.as_salt(), output_len)
        .map_err(failed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(failed)?,
        salt: Some(salt.as_salt()),
        hash: Some(hash),
    };
    Ok(phc.to_string())
}

fn verify_now(
    scratch: &mut Scratch,
    configured: &Params,
    password: &SecretString,
    phc: &str,
) -> Result<Verification, HashError> {
    let failed = |error: password_hash::Error| HashError::Failed(error.to_string());
    let parsed = PasswordHash::new(phc).map_err(failed)?;
    // The stored hash's own algorithm, version and cost, as the argon2 crate's verifier reads
    // them; a hash that cannot be read never matches.
    let stored = Params::try_from(&parsed);
    let matches = match (&stored, parsed.salt, &parsed.hash) {
        (Ok(stored), Some(salt), Some(expected)) => {
            let algorithm = Algorithm::try_from(parsed.algorithm);
            let version = parsed.version.map(Version::try_from).transpose();
            match (algorithm, version) {
                (Ok(algorithm), Ok(version)) => {
                    let argon = Argon2::new(algorithm, version.unwrap_or_default(), stored.clone());
                    // `Output`'s equality is constant-time.
                    scratch
                        .compute(&argon, password, salt, expected.len())
                        .is_ok_and(|computed| computed == *expected)
                }
                _ => false,
            }
        }
        _ => false,
    };
    let needs_rehash = match stored {
        Ok(stored) => {
            parsed.algorithm.as_str() != "argon2id"
                || stored.m_cost() < configured.m_cost()
                || stored.t_cost() < configured.t_cost()
                || stored.p_cost() < configured.p_cost()
        }
        Err(_) => true,
    };
    Ok(Verification {
        matches,
        needs_rehash,
    })
}

/// Sets the calling thread's niceness to `nice`. On Linux niceness belongs to each thread, so
/// this leaves the rest of the process as it is; elsewhere it does nothing.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: both calls only read their integer arguments; `gettid` cannot fail.
        let result = unsafe {
            let thread = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, nice)
        };
        if result != 0 {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, nice, "hashing thread keeps its priority");
        }
    }
}

fn work(receiver: &Mutex<Receiver<Sent>>, params: &Params) {
    let mut scratch = Scratch::default();
    loop {
        // The lock is held only while taking the next job. The job's share is given back once
        // it is done, before its answer: a caller answered may send its next job at once.
        let next = receiver.lock().map(|receiver| receiver.recv());
        let Ok(Ok((job, span, share))) = next else {
            return;
        };
        let _entered = span.enter();
        match job {
            Job::Hash(password, reply) => {
                let hashed = hash_now(&mut scratch, params, &password);
                drop(share);
                let _ = reply.send(hashed);
            }
            Job::Verify(password, phc, reply) => {
                let verified = verify_now(&mut scratch, params, &password, &phc);
                drop(share);
                let _ = reply.send(verified);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> HashingSettings {
        HashingSettings {
            memory_kib: 1024,
            iterations: 1,
            workers: 1,
            queue: 1,
            ..HashingSettings::default()
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_weaker_ones_ask_for_rehash() {
        let weak = Hasher::start(&small()).unwrap();
        let phc = weak
            .hash("caller", SecretString::from("s3cret!".to_owned()))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let strong = Hasher::start(&HashingSettings {
            memory_kib: 2048,
            ..small()
        })
        .unwrap();
        let check = strong
            .verify(
                "caller",
                SecretString::from("s3cret!".to_owned()),
                phc.clone(),
            )
            .await
            .unwrap();
        assert_eq!(
            check,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
        let wrong = weak
            .verify("caller", SecretString::from("nope".to_owned()), phc)
            .await
            .unwrap();
        assert!(!wrong.matches && !wrong.needs_rehash);
    }

    #[test]
    fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let params = Params::new(1024, 1, 1, None).unwrap();
        let password = SecretString::from("correct horse".to_owned());
        let mut scratch = Scratch::default();

        let ours = hash_now(&mut scratch, &params, &password).unwrap();
        argon(&params)
            .verify_password(b"correct horse", &PasswordHash::new(&ours).unwrap())
            .expect("the crate verifies a hash made here");

        // Made by the crate, with other costs, algorithms and versions than configured.
        for (algorithm, version, memory) in [
            (Algorithm::Argon2id, Version::V0x13, 2048),
            (Algorithm::Argon2i, Version::V0x13, 1024),
            (Algorithm::Argon2d, Version::V0x10, 512),
        ] {
            let salt = SaltString::encode_b64(b"sixteen byte sal").unwrap();
            let theirs = Argon2::new(algorithm, version, Params::new(memory, 2, 1, None).unwrap())
                .hash_password(b"correct horse", &salt)
                .unwrap()
                .to_string();
            let right = verify_now(&mut scratch, &params, &password, &theirs).unwrap();
            assert!(right.matches, "{theirs}");
            let wrong = SecretString::from("correct horsE".to_owned());
            assert!(
                !verify_now(&mut scratch, &params, &wrong, &theirs)
                    .unwrap()
                    .matches
            );
        }
        // The scratch grew to the largest cost it met and was reused for the smaller ones.
        assert_eq!(scratch.blocks.len(), 2048);
    }

    #[test]
    fn a_foreign_hash_never_matches_and_an_unreadable_one_is_an_error() {
        let params = Params::new(1024, 1, 1, None).unwrap();
        let password = SecretString::from("x".to_owned());
        let mut scratch = Scratch::default();
        assert!(verify_now(&mut scratch, &params, &password, "not a PHC string").is_err());
        let scrypt = "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E";
        let check = verify_now(&mut scratch, &params, &password, scrypt).unwrap();
        assert!(!check.matches && check.needs_rehash);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_the_configured_niceness() {
        let hasher = Hasher::start(&HashingSettings {
            workers: 2,
            nice: 7,
            ..small()
        })
        .unwrap();
        hasher
            .hash("caller", SecretString::from("x".to_owned()))
            .await
            .unwrap();
        // /proc/self/task/<tid>/stat: "<tid> (<name>) <state> …", niceness the 19th field.
        // Other tests of this process may run pools of their own, at the default niceness.
        let niceness = |stat: &str| -> i32 {
            let fields = stat.split_once(") ").unwrap().1;
            fields.split(' ').nth(16).unwrap().parse().unwrap()
        };
        let at_seven = || {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
                .filter(|stat| stat.contains("(argon2-") && niceness(stat) == 7)
                .count()
        };
        // A worker that has not been scheduled yet has not lowered its priority yet: on a
        // loaded machine the second one may start after the first hash is done.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while at_seven() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(at_seven(), 2, "both hashing threads run at niceness 7");
        let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        assert_eq!(
            niceness(&own),
            0,
            "the test's own thread keeps its priority"
        );
    }

    #[tokio::test]
    async fn a_caller_beyond_its_share_is_refused_while_another_goes_in() {
        use futures::FutureExt;
        let hasher = Hasher::start(&HashingSettings {
            memory_kib: 64 * 1024,
            iterations: 3,
            queue: 8,
            per_caller: 2,
            ..small()
        })
        .unwrap();
        let password = || SecretString::from("x".to_owned());
        // Two hashes of "flood" go in (one running, one waiting); their answers are not
        // awaited, which leaves them in the pool just the same.
        for _ in 0..2 {
            assert!(hasher.hash("flood", password()).now_or_never().is_none());
        }
        assert!(matches!(
            hasher.hash("flood", password()).await,
            Err(HashError::Busy)
        ));
        hasher
            .hash("other", password())
            .await
            .expect("another caller still goes in");
        // Its share comes back as its hashes end.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match hasher.hash("flood", password()).await {
                Ok(_) => break,
                Err(HashError::Busy) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(error) => panic!("flood's share never came back: {error}"),
            }
        }
    }

    #[tokio::test]
    async fn a_full_pool_refuses_at_once() {
        let hasher = Hasher::start(&HashingSettings {
            memory_kib: 64 * 1024,
            iterations: 3,
            ..small()
        })
        .unwrap();
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    hasher
                        .hash("caller", SecretString::from("x".to_owned()))
                        .await
                })
            })
            .collect();
        let results = futures::future::join_all(calls).await;
        assert!(
            results
                .iter()
                .any(|result| matches!(result, Ok(Err(HashError::Busy)))),
            "one worker and a queue of one cannot take eight hashes at once"
        );
    }
}
