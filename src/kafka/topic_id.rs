//! Kafka topic ids (KIP-516): a topic deleted and created again under the same name gets a new
//! id, while its offsets start again at 0. pricefeed uses the id as the **epoch** of a channel's
//! positions, so that a client's seqNos from the old topic are never taken for positions in the
//! new one. The rdkafka crate does not wrap librdkafka's DescribeTopics, so this calls it through
//! the C API (`rd_kafka_DescribeTopics`, librdkafka ≥ 2.3).

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::failure::{KafkaFailure, Result};

/// The id of each of `topics` that exists, as Kafka prints it (base64), by name.
pub fn topic_ids<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, String>> {
    let mut ids = HashMap::new();
    if topics.is_empty() {
        return Ok(ids);
    }
    let names: Vec<CString> = topics
        .iter()
        .map(|t| CString::new(*t).map_err(|_| KafkaFailure::Other(format!("topic name {t:?}"))))
        .collect::<Result<_>>()?;
    let mut name_ptrs: Vec<*const c_char> = names.iter().map(|c| c.as_ptr()).collect();
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as c_int;
    let rk = client.client().native_ptr();
    // SAFETY: `rk` is a live client handle owned by `client` for the whole call. Every object
    // created here is destroyed before returning; the strings read from the result are copied
    // before the event that owns them is destroyed; `names` outlives the collection built on it
    // (librdkafka copies the names anyway).
    unsafe {
        let collection =
            rd::rd_kafka_TopicCollection_of_topic_names(name_ptrs.as_mut_ptr(), name_ptrs.len());
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = rd::rd_kafka_queue_new(rk);
        rd::rd_kafka_DescribeTopics(rk, collection, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let outcome = if event.is_null() {
            Err(KafkaFailure::Other(
                "describing topics: no answer in time".into(),
            ))
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let why = CStr::from_ptr(rd::rd_kafka_event_error_string(event))
                .to_string_lossy()
                .into_owned();
            Err(KafkaFailure::Other(format!("describing topics: {why}")))
        } else {
            let result = rd::rd_kafka_event_DescribeTopics_result(event);
            let mut count = 0usize;
            let described = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
            for i in 0..count {
                let d = *described.add(i);
                let error = rd::rd_kafka_TopicDescription_error(d);
                if !error.is_null()
                    && rd::rd_kafka_error_code(error)
                        != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    continue; // e.g. the topic does not exist
                }
                let name = CStr::from_ptr(rd::rd_kafka_TopicDescription_name(d))
                    .to_string_lossy()
                    .into_owned();
                let id = rd::rd_kafka_TopicDescription_topic_id(d);
                if id.is_null() {
                    continue;
                }
                let text = CStr::from_ptr(rd::rd_kafka_Uuid_base64str(id))
                    .to_string_lossy()
                    .into_owned();
                ids.insert(name, text);
            }
            Ok(())
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_TopicCollection_destroy(collection);
        outcome?;
    }
    Ok(ids)
}
